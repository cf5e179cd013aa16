"""The simulated potline as a receiver sees it: contract payloads, topics, and spoiled ones.

Physics and schedules work in arrays and seconds; the pipeline under test reads JSON objects
in milliseconds on MQTT topics. Rounding, naming and ordering happen once, here, so the
demo, the tests and the benchmarks all see the same bytes, and so do the malformed messages
that exercise the pipeline's rejection paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson

from simulator.parameters import (
    CHUNK_STEPS,
    NS_PER_MS,
    NS_PER_S,
    CellTraits,
    Seeds,
    SimParams,
)
from simulator.physics import CellPhysics
from simulator.schedules import AnodeChanges, Schedules, Taps

DEFAULT_TELEMETRY_TOPIC = "smelter/{potline}/{cell}/telemetry"
DEFAULT_EVENT_TOPIC = "smelter/{potline}/{cell}/event"
MALFORMED_KINDS = ("bad_json", "missing_key", "out_of_range", "non_finite")
OUT_OF_RANGE_V = 150.0

Payload = dict[str, Any]


class SimEvent(NamedTuple):
    """One event of one cell, its payload in the contract's form."""

    ts_ns: int
    cell: str
    payload: Payload


class Step(NamedTuple):
    """The telemetry of all cells at one sample time, payloads in ``cell_ids`` order."""

    ts_ns: int
    payloads: list[Payload]


class Record(NamedTuple):
    """One object of the interleaved stream; ``kind`` names the topic it belongs to."""

    ts_ns: int
    cell: str
    kind: Literal["telemetry", "event"]
    payload: Payload


@dataclass(frozen=True)
class Columns:
    """Telemetry of ``len(ts_ns)`` steps × all cells, already rounded as in the payloads."""

    cells: tuple[str, ...]
    ts_ns: np.ndarray  # (steps,) int64
    line_current_ka: np.ndarray  # (steps,)
    cell_voltage_v: np.ndarray  # (steps, cells)
    bath_temp_c: np.ndarray  # (steps, cells)
    noise_uohm: np.ndarray  # (steps, cells)

    def __len__(self) -> int:
        return len(self.ts_ns)

    def payloads(self) -> list[list[Payload]]:
        """Payload objects indexed ``[step][cell]``."""
        ts_ms = (self.ts_ns // NS_PER_MS).tolist()
        current = self.line_current_ka.tolist()
        rows = zip(
            self.cell_voltage_v.tolist(),
            self.bath_temp_c.tolist(),
            self.noise_uohm.tolist(),
            strict=True,
        )
        return [
            [
                {
                    "ts": ts,
                    "cell_voltage_v": v,
                    "line_current_ka": i,
                    "bath_temp_c": b,
                    "noise_uohm": n,
                }
                for v, b, n in zip(volts, baths, noises, strict=True)
            ]
            for ts, i, (volts, baths, noises) in zip(ts_ms, current, rows, strict=True)
        ]

    def encode(self, array_size: int = 1) -> list[tuple[int, bytes]]:
        """``(cell index, JSON bytes)`` in publishing order.

        With ``array_size`` k > 1 each message is an array of k consecutive samples of one
        cell, as a controller flushing its buffer sends them; the last one may be shorter.
        """
        rows = self.payloads()
        if array_size == 1:
            return [(c, dumps(obj)) for row in rows for c, obj in enumerate(row)]
        messages: list[tuple[int, bytes]] = []
        for first in range(0, len(rows), array_size):
            block = rows[first : first + array_size]
            messages.extend((c, dumps([row[c] for row in block])) for c in range(len(self.cells)))
        return messages


def dumps(obj: Any) -> bytes:
    """JSON bytes of exactly their size.

    orjson hands back its over-allocated buffer shrunk in place; keeping hundreds of
    thousands of those fragments the heap and made encoding 15 times slower than a copy.
    """
    return bytes(memoryview(orjson.dumps(obj)))


def topic(template: str, potline: str, cell: str) -> str:
    """The MQTT topic of a cell's message, from a template such as the defaults above."""
    return template.format(potline=potline, cell=cell)


def change_events(changes: AnodeChanges, cell_ids: tuple[str, ...], p: SimParams) -> list[SimEvent]:
    """The ``anode_change`` events of the scheduled changes."""
    return [
        SimEvent(
            ts * NS_PER_MS,
            cell_ids[cell],
            {
                "ts": ts,
                "type": "anode_change",
                "anode": anode,
                "block": p.other_block if other else p.block,
                "butt_mm": butt,
                "crew": crew,
            },
        )
        for cell, ts, anode, other, butt, crew in zip(
            changes.cell.tolist(),
            changes.ts_ms.tolist(),
            changes.anode.tolist(),
            changes.other_block.tolist(),
            changes.butt_mm.tolist(),
            changes.crew.tolist(),
            strict=True,
        )
    ]


def tap_events(taps: Taps, cell_ids: tuple[str, ...]) -> list[SimEvent]:
    """The ``metal_tap`` events of the scheduled taps."""
    return [
        SimEvent(
            ts * NS_PER_MS,
            cell_ids[cell],
            {"ts": ts, "type": "metal_tap", "metal_kg": kg},
        )
        for cell, ts, kg in zip(
            taps.cell.tolist(), taps.ts_ms.tolist(), taps.metal_kg.tolist(), strict=True
        )
    ]


class Spoiler:
    """Decides, reproducibly, which telemetry messages to spoil or repeat, and spoils them."""

    def __init__(self, seed: int, bad_fraction: float, dup_fraction: float) -> None:
        self._rng = np.random.default_rng([seed, 0x5B0_11])
        self._bad = bad_fraction
        self._dup = dup_fraction

    def kind(self) -> str | None:
        """A malformed kind for the next message, or None to send it clean."""
        if self._rng.random() >= self._bad:
            return None
        return MALFORMED_KINDS[self._rng.integers(len(MALFORMED_KINDS))]

    def repeat(self) -> bool:
        """Whether to send the clean message just sent a second time."""
        return bool(self._rng.random() < self._dup)

    def encode(self, objects: list[Payload], single: bool, kind: str | None) -> bytes:
        """The message's JSON, with one object (or, for bad JSON, all) spoiled by ``kind``."""
        if kind is None:
            return dumps(objects[0] if single else objects)
        if kind == "bad_json":
            raw = dumps(objects[0] if single else objects)
            return raw[: len(raw) // 2]
        spoiled = list(objects)
        victim = int(self._rng.integers(len(objects)))
        spoiled[victim] = spoil(objects[victim], kind)
        body = spoiled[0] if single else spoiled
        # json, not orjson: only it writes the NaN of a non-finite value, as sloppy
        # controller firmware does.
        return json.dumps(body, separators=(",", ":")).encode()


def spoil(obj: Payload, kind: str) -> Payload:
    """A copy of a telemetry object with the defect ``kind``."""
    if kind == "missing_key":
        return {key: value for key, value in obj.items() if key != "cell_voltage_v"}
    value = OUT_OF_RANGE_V if kind == "out_of_range" else float("nan")
    return {**obj, "cell_voltage_v": value}


class PotlineSim:
    """A potline of ``cells`` cells in series, sampled every ``interval_s`` from ``start_ns``.

    Samples lie on the grid ``start_ns + k·interval`` (step ``k``, negative before the
    start); events are defined at any time, before the start too.
    """

    def __init__(
        self,
        potline: str = "P1",
        cells: int = 10,
        *,
        seed: int = 0,
        start_ns: int,
        interval_s: float = 1.0,
        params: SimParams | None = None,
    ) -> None:
        interval_ns = round(interval_s * NS_PER_S)
        if interval_ns < NS_PER_MS or interval_ns % NS_PER_MS:
            msg = "interval_s must be a whole number of milliseconds"
            raise ValueError(msg)
        if cells < 1:
            msg = "cells must be >= 1"
            raise ValueError(msg)
        self.potline = potline
        self.cell_ids = tuple(f"C{i + 1:03d}" for i in range(cells))
        self.params = params or SimParams()
        self.start_ns = start_ns - start_ns % NS_PER_MS
        self.interval_ns = interval_ns
        seeds = Seeds(seed, potline)
        traits = CellTraits.draw(seeds, cells, self.params)
        self._physics = CellPhysics(seeds, self.params, traits)
        self._schedules = Schedules(seeds, self.params, traits, self._physics.line)

    # ---- time grid ------------------------------------------------------------------

    def step_ns(self, k: int) -> int:
        """Time of step ``k``."""
        return self.start_ns + k * self.interval_ns

    def steps(self, t0_ns: int, t1_ns: int) -> range:
        """Steps whose time lies in ``[t0_ns, t1_ns)``."""
        first = -((self.start_ns - t0_ns) // self.interval_ns)
        end = -((self.start_ns - t1_ns) // self.interval_ns)
        return range(first, max(first, end))

    # ---- telemetry ------------------------------------------------------------------

    def columns(self, k0: int, n: int) -> Columns:
        """Telemetry of steps ``k0 .. k0+n-1`` for all cells, as arrays: the fast path."""
        ts_ns = self.step_ns(k0) + np.arange(n, dtype=np.int64) * self.interval_ns
        signals = self._physics.signals(k0, ts_ns / NS_PER_S, self._schedules.anode_changes)
        return Columns(
            cells=self.cell_ids,
            ts_ns=ts_ns,
            line_current_ka=np.round(signals.line_current_ka, 2),
            cell_voltage_v=np.round(signals.cell_voltage_v, 4),
            bath_temp_c=np.round(signals.bath_temp_c, 1),
            noise_uohm=np.round(signals.noise_uohm, 2),
        )

    def telemetry(self, t0_ns: int, t1_ns: int) -> Iterator[Step]:
        """One ``Step`` per sample time in ``[t0_ns, t1_ns)``."""
        steps = self.steps(t0_ns, t1_ns)
        for k0 in range(steps.start, steps.stop, CHUNK_STEPS):
            cols = self.columns(k0, min(CHUNK_STEPS, steps.stop - k0))
            yield from map(Step, cols.ts_ns.tolist(), cols.payloads())

    # ---- events ---------------------------------------------------------------------

    def events(self, t0_ns: int, t1_ns: int) -> list[SimEvent]:
        """Anode changes and metal taps in ``[t0_ns, t1_ns)``, in time order.

        Needs no telemetry, so it is cheap for a long past window (seeding anode history).
        """
        t0_s, t1_s = t0_ns / NS_PER_S, t1_ns / NS_PER_S
        changes = self._schedules.anode_changes(t0_s, t1_s)
        events = change_events(changes, self.cell_ids, self.params)
        events += tap_events(self._schedules.taps(t0_s, t1_s), self.cell_ids)
        inside = [e for e in events if t0_ns <= e.ts_ns < t1_ns]
        return sorted(inside, key=lambda e: (e.ts_ns, e.cell, e.payload["type"]))

    # ---- both, interleaved ----------------------------------------------------------

    def stream(self, t0_ns: int, t1_ns: int) -> Iterator[Record]:
        """Telemetry and events of ``[t0_ns, t1_ns)`` in time order.

        An event comes after the samples of its own instant. Generated chunk by chunk, so
        a long window never sits in memory.
        """
        steps = self.steps(t0_ns, t1_ns)
        inner = [self.step_ns(k) for k in steps[CHUNK_STEPS::CHUNK_STEPS]]
        bounds = [t0_ns, *inner, t1_ns]
        for c0, c1 in pairwise(bounds):
            yield from self._merge(self.telemetry(c0, c1), self.events(c0, c1))

    def _merge(self, steps: Iterator[Step], events: list[SimEvent]) -> Iterator[Record]:
        pending = iter(events)
        event = next(pending, None)
        for step in steps:
            while event is not None and event.ts_ns < step.ts_ns:
                yield Record(event.ts_ns, event.cell, "event", event.payload)
                event = next(pending, None)
            for cell, payload in zip(self.cell_ids, step.payloads, strict=True):
                yield Record(step.ts_ns, cell, "telemetry", payload)
        if event is not None:
            yield Record(event.ts_ns, event.cell, "event", event.payload)
        for event in pending:
            yield Record(event.ts_ns, event.cell, "event", event.payload)
