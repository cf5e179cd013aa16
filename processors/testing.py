"""Batch builders and the contract every processor must keep, for the tests.

The engine cuts the inbox into batches wherever a read ends, keeps each state in memory,
checkpoints it as JSON in the journal now and then, and may restart from any checkpoint; a
processor is only correct if none of that shows in its points. ``check_compliance`` states
that contract once, so that a new processor is held to it by adding it to the list the
compliance test runs.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType
from typing import Any

import numpy as np
import orjson

from processors.base import Flushing, Processor, checkpoint
from processors.model import Batch, Event, FieldValue, Point, SampleBatch

NS = 1_000_000_000
Cell = tuple[str, str]
PointKey = tuple[str, tuple[tuple[str, str], ...], int]


def at_rate(t0_ns: int, t1_ns: int, step_s: float) -> list[int]:
    """Sample times from ``t0_ns`` up to, not including, ``t1_ns`` every ``step_s``."""
    return list(range(t0_ns, t1_ns, int(step_s * NS)))


def samples(
    cells: Sequence[Cell],
    times: Iterable[int],
    *,
    voltage: Callable[[int, int], float] = lambda c, t: 4.2,
    current: Callable[[int, int], float] = lambda c, t: 300.0,
    extra: Callable[[int, int], dict[str, float] | None] = lambda c, t: None,
    sent: Callable[[int, int], bool] = lambda c, t: True,
) -> SampleBatch:
    """Every cell at every time, in time order; each callable gets (cell index, ts_ns).

    ``sent`` false leaves a sample out (a gap); cells without a sample are not listed, as
    the engine builds its batches.
    """
    rows = [(c, t) for t in times for c in range(len(cells)) if sent(c, t)]
    present = sorted({c for c, _ in rows})
    local = {c: k for k, c in enumerate(present)}
    return SampleBatch(
        [cells[c] for c in present],
        np.array([local[c] for c, _ in rows], dtype=np.int64),
        np.array([t for _, t in rows], dtype=np.int64),
        np.array([voltage(c, t) for c, t in rows], dtype=np.float64),
        np.array([current(c, t) for c, t in rows], dtype=np.float64),
        [extra(c, t) for c, t in rows],
    )


def anode_change(
    cell: Cell, ts_ns: int, anode: int, block: str = "590", butt_mm: float | None = None
) -> Event:
    """An ``anode_change`` as the decoder passes it on."""
    data: dict[str, Any] = {"anode": anode, "block": block}
    if butt_mm is not None:
        data["butt_mm"] = butt_mm
    return Event(cell[0], cell[1], ts_ns, "anode_change", data)


def metal_tap(cell: Cell, ts_ns: int, metal_kg: float) -> Event:
    """A ``metal_tap`` as the decoder passes it on."""
    return Event(cell[0], cell[1], ts_ns, "metal_tap", {"metal_kg": metal_kg})


def rows(batch: Batch) -> int:
    """How many rows (samples and events) a batch has: the cuts ``split`` accepts."""
    return len(batch.samples) + len(batch.events)


def split(batch: Batch, at: int) -> tuple[Batch, Batch]:
    """The batch cut before its ``at``-th row, rows taken in time order (events first on a tie).

    Samples stay in arrival order and events in list order within each part.
    """
    sb = batch.samples
    ts = sb.ts_ns.tolist()
    keys = [(ev.ts_ns, 0, j) for j, ev in enumerate(batch.events)]
    keys += [(t, 1, i) for i, t in enumerate(ts)]
    first = {(kind, index) for _, kind, index in sorted(keys)[:at]}
    in_first = np.array([(1, i) in first for i in range(len(ts))], dtype=bool)
    events = [
        [ev for j, ev in enumerate(batch.events) if ((0, j) in first) == part]
        for part in (True, False)
    ]
    return (
        Batch(_rows(sb, np.flatnonzero(in_first)), events[0]),
        Batch(_rows(sb, np.flatnonzero(~in_first)), events[1]),
    )


def _rows(sb: SampleBatch, keep: np.ndarray) -> SampleBatch:
    """The kept rows, their cells renumbered to those present."""
    present, local = np.unique(sb.cell_id[keep], return_inverse=True)
    return SampleBatch(
        [sb.cells[c] for c in present.tolist()],
        local.astype(np.int64),
        sb.ts_ns[keep],
        sb.voltage_v[keep],
        sb.current_ka[keep],
        [sb.extra[k] for k in keep.tolist()],
        None if sb.arrival_ns is None else sb.arrival_ns[keep],
    )


def merged(points: Iterable[Point]) -> dict[PointKey, dict[str, FieldValue]]:
    """What InfluxDB keeps of the points: per measurement, tags and time, the last fields."""
    return {(p.measurement, p.tags, p.time_ns): p.fields for p in points}


def check_compliance(processor: Processor, batch: Batch, at: int, state: Any = None) -> None:
    """Assert the processor's contract on a batch and a cut of it at row ``at``.

    Its checkpoint is plain JSON, made without ``asdict`` or ``deepcopy``, that reads back
    equal; the state read back from it gives the same next output and state as the state
    kept in memory; neither the batch nor a checkpoint given to ``apply`` is modified (an
    ``InMemory`` state is updated in place); the batch whole or cut in two gives the
    same points, once rewrites of a point are merged, and the same state. A ``Flushing``
    processor rewrites a running value only once its data advanced ``update_interval_s``
    since the last write, so how fresh its last write is, and the write time it keeps,
    depend on where batches end: it must write the same points (measurement, tags, time)
    whole or cut, and the same values and state once flushed. Floats are compared to 1e-9,
    relative: sums taken in two parts round differently.
    """
    before, state_before = _snapshot(batch), copy.deepcopy(state)
    whole_state, whole = processor.apply(batch, state)
    assert _snapshot(batch) == before, "apply modified its batch"
    assert state == state_before, "apply modified the checkpoint it was given"
    first, second = split(batch, at)
    cut_state, cut = processor.apply(first, state)
    read_back = _read_back(processor, cut_state)
    cut_state, rest = processor.apply(second, cut_state)
    restored_state, restored = processor.apply(second, read_back)
    assert restored == rest, "a state read back from its checkpoint gives other points"
    assert checkpoint(processor, restored_state) == checkpoint(processor, cut_state), (
        "a state read back from its checkpoint gives another state"
    )
    if isinstance(processor, Flushing):
        _assert_same_keys({**merged(cut), **merged(rest)}, merged(whole))
        whole_state, tail = processor.flush(whole_state)
        cut_state, cut_tail = processor.flush(cut_state)
        cut, whole = [*cut, *rest, *cut_tail], [*whole, *tail]
    else:
        cut = [*cut, *rest]
    _assert_same(merged(cut), merged(whole))
    whole_data = checkpoint(processor, whole_state)
    _assert_close(checkpoint(processor, cut_state), whole_data, "state")


def check_late_events(processor: Processor, batch: Batch, at: int) -> None:
    """Assert that events logged after their samples give the points of the batch whole.

    The samples are cut at row ``at`` (time order) into two batches, each read back from
    its checkpoint, and every event comes in a third batch after them all: a change logged
    at the end of the shift. For a processor whose points do not depend on arrival order
    (the settling after an anode change); most count an event where it arrives.
    """
    _, whole = processor.apply(batch, None)
    first, second = split(Batch(batch.samples, []), at)
    state, points = None, []
    for part in (first, second, Batch(_rows(batch.samples, np.zeros(0, np.int64)), batch.events)):
        state, out = processor.apply(part, state)
        state = orjson.loads(orjson.dumps(checkpoint(processor, state)))
        points += out
    _assert_same(merged(points), merged(whole))


def _read_back(processor: Processor, state: Any) -> Any:
    """The state's checkpoint through JSON, checked equal to it and cheap to make."""
    calls = _calls_during(lambda: checkpoint(processor, state))
    copies = sorted(calls & {"asdict", "_asdict_inner", "deepcopy"})
    assert not copies, f"{processor.name}'s checkpoint copies its state twice: {copies}"
    data = checkpoint(processor, state)
    read_back = orjson.loads(orjson.dumps(data))
    assert read_back == data, "the checkpoint does not read back equal from JSON"
    return read_back


def _calls_during(action: Callable[[], object]) -> set[str]:
    """The names of the Python functions called while ``action`` runs."""
    names: set[str] = set()

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call":
            names.add(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return names


def _assert_same_keys(cut: Mapping[PointKey, Any], whole: Mapping[PointKey, Any]) -> None:
    assert cut.keys() == whole.keys(), (
        f"cut batches write other points: only cut {sorted(cut.keys() - whole.keys())}, "
        f"only whole {sorted(whole.keys() - cut.keys())}"
    )


def _assert_same(
    cut: Mapping[PointKey, Mapping[str, FieldValue]],
    whole: Mapping[PointKey, Mapping[str, FieldValue]],
) -> None:
    _assert_same_keys(cut, whole)
    for key, fields in whole.items():
        _assert_close(cut[key], fields, f"point {key}")


def _assert_close(a: Any, b: Any, where: str) -> None:
    assert _close(a, b), f"{where} differs:\n cut   {a}\n whole {b}"


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def _snapshot(batch: Batch) -> Any:
    sb = batch.samples
    columns = [sb.cell_id, sb.ts_ns, sb.voltage_v, sb.current_ka]
    if sb.arrival_ns is not None:
        columns.append(sb.arrival_ns)
    events = [(e.potline, e.cell, e.ts_ns, e.type, copy.deepcopy(e.data)) for e in batch.events]
    return (list(sb.cells), [c.tobytes() for c in columns], copy.deepcopy(sb.extra), events)
