"""Controller clocks: how far behind (or ahead) each cell's stamps are (contract 6.5).

A controller whose clock jumps is the first cause of late samples and lost kWh/t, and it
shows nowhere else: its samples are accepted, at the wrong instants. The arrival time of a
live sample (a single object over MQTT) is cellmon's clock when it was decoded, so arrival
− ``ts`` is the controller's offset plus the transport's delay, a few ms. Objects of an
array (a buffer flushed after an outage) and replayed rows arrived long after they were
stamped, for good reasons: they are not timed (``arrival_ns`` ``UNTIMED``).

This is the ``cell_clock`` measurement: per cell and minute of arrival (UTC minute, stamped
with its start), ``offset_s``, the median offset of the minute's live samples (a median:
one sample held up in a broker's queue does not move it), and ``samples``, how many. A
minute is written once it is over: when the cell's next live sample arrives in a later
minute, and at ``flush`` (shutdown) as it stands, rewritten if more of it comes later.

When a minute is written over, its smallest offset is judged against the potline's
``clock_drift_limit_s`` (the median is what ``offset_s`` reports): a queue only ever adds
delay, so the least delayed sample is the closest to the controller's own clock, and a
backlog the broker kept while cellmon was down, drained in a burst of old samples up to
the live ones, raises nothing, where its median would page every cell. The ``clock_drift``
alarm is raised when that |offset| exceeds the limit and cleared when a later minute is
back within it, as ``alarm`` points of the alarm processor's format (``alarm_point``) at
the minute's start, which page as alerts (``Alerting``). A limit of None turns the watch
off; a raised alarm is then cleared at the next minute written. A minute written at
``flush`` is not judged: it is a part of a minute, which the next start judges whole.

Late samples are timed too (``Batch.timed``): a clock that jumps back makes nothing else
until its stamps pass its newest again, and that is when it matters most. Samples are
taken in arrival order, the inbox's, whatever the batch cuts; a cell's minute
never goes back (a sample stamped by a host clock that stepped back counts in the open
minute), so the points are the same however the stream is cut. State per cell: the open
minute, its offsets in ms (at most a minute of one cell's live samples), and whether the
alarm is raised; nothing else, so it is bounded by the cells that send live samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from processors.model import UNTIMED, Batch, FieldValue, Point
from processors.rules.alarm_rules import CLEARED, RAISED, alarm_point
from processors.rules.alarm_rules import MEASUREMENT as ALARM

NS = 1_000_000_000
MS = 1_000_000
MINUTE_NS = 60 * NS
MEASUREMENT = "cell_clock"
RULE = "clock_drift"
SEVERITY = "warning"


@dataclass(frozen=True)
class ClockSettings:
    """Each potline's ``clock_drift_limit_s`` (None: not watched; an absent potline too)."""

    limits_s: Mapping[str, float | None]


@dataclass(slots=True)
class _Cell:
    """One cell's open arrival minute, its live offsets in ms, and its alarm."""

    minute_ns: int
    offsets_ms: list[int]
    raised: bool = False


class _State:
    """The cells by ``potline/cell``, kept between batches; JSON only at a checkpoint."""

    def __init__(self, cells: dict[str, _Cell]) -> None:
        self.cells = cells

    @classmethod
    def of(cls, state: Any) -> _State:
        """The live state as it is, or new objects from a checkpoint, which stays unchanged.

        A checkpoint is ``{"cells": {"potline/cell": [minute_ns, [offset_ms, ...], raised]}}``.
        """
        if isinstance(state, cls):
            return state
        cells = (state or {}).get("cells", {})
        return cls(
            {k: _Cell(m, list(offsets), raised) for k, (m, offsets, raised) in cells.items()}
        )

    def to_json(self) -> dict[str, Any]:
        """The checkpoint (see ``of``)."""
        return {
            "cells": {k: [c.minute_ns, list(c.offsets_ms), c.raised] for k, c in self.cells.items()}
        }


class ClockProcessor:
    """Writes ``cell_clock`` per cell and arrival minute, and the ``clock_drift`` alarm."""

    name = "clock"

    def __init__(self, settings: ClockSettings) -> None:
        """``settings``: each potline's limit in seconds."""
        self._limits = settings.limits_s
        self._keys: dict[tuple[str, str], str] = {}

    def alerts(self, points: list[Point]) -> list[Point]:
        """Every alarm transition it wrote pages (``processors.base.Alerting``)."""
        return [p for p in points if p.measurement == ALARM]

    def checkpoint(self, state: Any) -> Any:
        """The state as JSON data (``processors.base.InMemory``)."""
        return _State.of(state).to_json()

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """The minutes this batch closed, and their alarm transitions, in time order."""
        st = _State.of(state)
        sb = batch.samples if batch.timed is None else batch.timed  # late ones too
        arrival = sb.arrival_ns
        if arrival is None:
            return st, []  # the usual batch: arrays and replays only
        rows = np.flatnonzero(arrival != UNTIMED)
        if not len(rows):
            return st, []
        rows = rows[np.argsort(sb.cell_id[rows], kind="stable")]  # by cell, in arrival order
        code = sb.cell_id[rows]
        minute = arrival[rows] // MINUTE_NS * MINUTE_NS
        offset_ms = (arrival[rows] - sb.ts_ns[rows]) // MS
        first = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        latest = np.maximum.reduceat(minute, first).tolist()
        starts = first.tolist()
        ends = [*starts[1:], len(rows)]
        offsets = offset_ms.tolist()
        points: list[Point] = []
        for lo, hi, newest in zip(starts, ends, latest, strict=True):
            where = sb.cells[int(code[lo])]
            cell = st.cells.get(self._key(where))
            if cell is not None and newest <= cell.minute_ns:  # the open minute goes on
                cell.offsets_ms += offsets[lo:hi]
            else:
                points += self._cell(st, where, minute[lo:hi], offset_ms[lo:hi])
        points.sort(key=lambda p: p.time_ns)
        return st, points

    def _key(self, where: tuple[str, str]) -> str:
        """``potline/cell``, made once per cell: a batch looks up every live cell."""
        key = self._keys.get(where)
        if key is None:
            key = self._keys[where] = f"{where[0]}/{where[1]}"
        return key

    def _cell(
        self, st: _State, where: tuple[str, str], minute: np.ndarray, offset_ms: np.ndarray
    ) -> list[Point]:
        """One cell's live samples of the batch, in arrival order: the minutes they close.

        The slow path, per cell: a batch reaches it only for a cell whose samples enter a
        new minute (once a minute) or that it has not seen.
        """
        key = self._key(where)
        cell = st.cells.get(key)
        running = np.maximum.accumulate(minute)  # a minute never goes back
        if cell is not None:
            running = np.maximum(running, cell.minute_ns)
        cuts = [0, *(np.flatnonzero(np.diff(running)) + 1).tolist(), len(running)]
        points: list[Point] = []
        for lo, hi in pairwise(cuts):
            start, offsets = int(running[lo]), offset_ms[lo:hi].tolist()
            if cell is not None and cell.minute_ns == start:
                cell.offsets_ms += offsets
                continue
            if cell is not None:
                points += self._close(where, cell)
                cell.minute_ns, cell.offsets_ms = start, offsets
            else:
                cell = st.cells[key] = _Cell(start, offsets)
        return points

    def _close(self, where: tuple[str, str], cell: _Cell) -> list[Point]:
        """A minute that is over: its point, and the alarm's transition if it makes one."""
        point = _minute_point(where, cell)
        offset_s = min(cell.offsets_ms) / 1000  # the least delayed: see the module
        limit = self._limits.get(where[0])
        over = limit is not None and abs(offset_s) > limit
        if over == cell.raised:
            return [point]
        cell.raised = over
        state = RAISED if over else CLEARED
        return [point, alarm_point(where, RULE, SEVERITY, state, offset_s, cell.minute_ns)]

    def flush(self, state: Any) -> tuple[Any, list[Point]]:
        """Every open minute as it stands, unjudged (``processors.base.Flushing``)."""
        st = _State.of(state)
        points = [_minute_point(tuple(k.split("/", 1)), c) for k, c in st.cells.items()]
        return st, sorted(points, key=lambda p: p.time_ns)


def _minute_point(where: tuple[str, ...], cell: _Cell) -> Point:
    """The ``cell_clock`` point of a cell's minute: the median offset of its live samples."""
    tags = (("potline", where[0]), ("cell", where[1]))
    median_ms = _median(cell.offsets_ms)
    fields: dict[str, FieldValue] = {"offset_s": median_ms / 1000, "samples": len(cell.offsets_ms)}
    return Point(MEASUREMENT, tags, fields, cell.minute_ns)


def _median(values: list[int]) -> float:
    """The median as numpy's: a sort of the minute's offsets (about 60), not an array each."""
    ordered = sorted(values)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[half])
    return (ordered[half - 1] + ordered[half]) / 2
