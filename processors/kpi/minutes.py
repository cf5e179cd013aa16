"""Minute aggregates of each cell's raw samples: the contract's ``cell_1m`` (5.4).

Boards that show a month read a point a minute instead of sixty, so the aggregates must be
what the raw points would give: the plain arithmetic mean, minimum, maximum and count of
the samples in the minute, as InfluxDB's ``GROUP BY time(1m)`` computes them over ``cell``
(not time-weighted: a mean of samples, so a query of either measurement agrees).

A minute is the plant's local minute (``plant.timezone``), stamped with its start in UTC.
With whole-minute offsets that is the UTC minute; it is computed from the zone all the same,
so the rule is the calendar's, not an assumption about offsets.

Each cell's newest minute stays open in the state as running sums; it is written once the
cell's data has moved into a later minute (a sample at or after its end), and at ``flush``.
A minute written at flush and again when more of its samples arrive is the same point
(tags and time), rewritten with the fuller values.

The processor is ``Recomputable``: a replay or a recalculation redoes the minutes of the
periods it touches from the database's raw history (live and replayed samples together),
as it does the other KPIs, rather than writing minutes of the replayed file's samples alone
over minutes the live data also filled.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from processors.base import PeriodId
from processors.kpi.by_cell import ByCell
from processors.kpi.ledger import period_at
from processors.kpi.periods import Calendar
from processors.model import Batch, FieldValue, Point, SampleBatch

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_S = 3600
MEASUREMENT = "cell_1m"
NOISE = "noise_uohm"


@dataclass(slots=True)
class Minute:
    """Running sums of one cell's samples in one minute; plain numbers, so JSON as it is."""

    start_ns: int
    samples: int
    voltage_sum: float
    voltage_min: float
    voltage_max: float
    current_sum: float
    noise_sum: float = 0.0
    noise_samples: int = 0

    def add(
        self,
        samples: int,
        v_sum: float,
        v_min: float,
        v_max: float,
        i_sum: float,
        noise_sum: float,
        noise_samples: int,
    ) -> None:
        """Add the sums of later samples of the same minute, in place: no new object a batch."""
        self.samples += samples
        self.voltage_sum += v_sum
        self.voltage_min = min(self.voltage_min, v_min)
        self.voltage_max = max(self.voltage_max, v_max)
        self.current_sum += i_sum
        self.noise_sum += noise_sum
        self.noise_samples += noise_samples

    def to_json(self) -> dict[str, Any]:
        """The sums as a dict literal: ``flat`` per cell was a third of a checkpoint."""
        return {
            "start_ns": self.start_ns,
            "samples": self.samples,
            "voltage_sum": self.voltage_sum,
            "voltage_min": self.voltage_min,
            "voltage_max": self.voltage_max,
            "current_sum": self.current_sum,
            "noise_sum": self.noise_sum,
            "noise_samples": self.noise_samples,
        }

    def fields(self) -> dict[str, FieldValue]:
        """The point's fields."""
        return _fields(
            self.samples,
            self.voltage_sum,
            self.voltage_min,
            self.voltage_max,
            self.current_sum,
            self.noise_sum,
            self.noise_samples,
        )


Open = dict[tuple[str, str], Minute]
"""Each cell's open (newest) minute, by (potline, cell)."""


@dataclass
class _State:
    """The open minutes, kept between batches; JSON only at a checkpoint."""

    opened: Open

    @classmethod
    def of(cls, state: Any) -> _State:
        """The live state as it is, or one read from a checkpoint.

        A checkpoint is ``{"open": {potline: {cell: Minute as a dict}}}``.
        """
        if isinstance(state, cls):
            return state
        nested = (state or {}).get("open", {})
        return cls({(p, c): Minute(**m) for p, cells in nested.items() for c, m in cells.items()})

    def to_json(self) -> dict[str, Any]:
        """Sorted by cell, so the JSON does not depend on the order cells were seen in."""
        nested: dict[str, dict[str, Any]] = {}
        for (potline, cell), minute in sorted(self.opened.items()):
            nested.setdefault(potline, {})[cell] = minute.to_json()
        return {"open": nested}


class MinuteProcessor:
    """Writes ``cell_1m``: each cell's samples per local minute (mean, min, max, count)."""

    name = "minutes"
    instants: frozenset[str] = frozenset()  # a minute's start: never moved

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Add the batch to the open minutes; write every minute a cell's data has left.

        A cell's minutes between its first and last of the batch are whole already: they
        are written from the batch's sums as they are, with no ``Minute`` made of them (an
        hour of a recalculation is 60 minutes of every cell).
        """
        st = _State.of(state)
        opened = st.opened
        points: list[Point] = []
        cells = batch.samples.cells
        heads, (code, starts, *sums) = _minutes(batch.samples, self.calendar)
        n, v_sum, v_min, v_max, i_sum, x_sum, x_n = sums
        for lo, hi in zip(heads, [*heads[1:], len(code)][: len(heads)], strict=True):
            cell = cells[code[lo]]
            before = opened.get(cell)
            if before is not None and before.start_ns == starts[lo]:
                before.add(n[lo], v_sum[lo], v_min[lo], v_max[lo], i_sum[lo], x_sum[lo], x_n[lo])
                first = before  # a live batch: a second more of each cell's open minute
            else:
                if before is not None:  # the cell's data has passed its end
                    points.append(_point(cell, before))
                first = Minute(starts[lo], *(column[lo] for column in sums))
            if hi - lo > 1:
                points += _whole(cell, first, starts, sums, lo, hi)
                first = Minute(starts[hi - 1], *(column[hi - 1] for column in sums))
            opened[cell] = first
        return st, points

    def flush(self, state: Any) -> tuple[Any, list[Point]]:
        """Write the open minutes as they stand; they stay open for the samples to come."""
        st = _State.of(state)
        points = [_point(cell, minute) for cell, minute in sorted(st.opened.items())]
        return st, points

    def checkpoint(self, state: Any) -> Any:
        """The open minutes as JSON data."""
        return _State.of(state).to_json()

    def rebase(self, state: Any, fresh: Any, periods: Collection[PeriodId]) -> Any:
        """The live open minutes, those in these periods continued from the rebuilt sums.

        The rebuilt state's open minute of a cell replaces the live one when it lies in one
        of the periods and is not older: the recalculation has written it from every sample
        the database holds, and the live minute's next write must not undo that.
        """
        st = _State.of(state)
        live, rebuilt = st.opened, _State.of(fresh).opened
        spans = [(p, *period_at(self.calendar, kind, start)) for p, kind, start in periods]
        for cell, minute in rebuilt.items():
            inside = any(p == cell[0] and a <= minute.start_ns < b for p, a, b in spans)
            before = live.get(cell)
            if inside and (before is None or before.start_ns <= minute.start_ns):
                live[cell] = replace(minute)  # a copy: the live one is added to in place
        return st


def _point(cell: tuple[str, str], minute: Minute) -> Point:
    tags = (("potline", cell[0]), ("cell", cell[1]))
    return Point(MEASUREMENT, tags, minute.fields(), minute.start_ns)


def _whole(
    cell: tuple[str, str],
    first: Minute,
    starts: list[int],
    sums: list[list[Any]],
    lo: int,
    hi: int,
) -> list[Point]:
    """The points of the cell's minutes the batch has passed.

    Its first (``first``, which may have gone on an open one), and those before its last
    (row ``hi - 1``) from their sums as they are.
    """
    tags = (("potline", cell[0]), ("cell", cell[1]))
    points = [Point(MEASUREMENT, tags, first.fields(), first.start_ns)]
    rows = slice(lo + 1, hi - 1)
    middle = zip(starts[rows], *(column[rows] for column in sums), strict=True)
    points += [Point(MEASUREMENT, tags, _fields(*group[1:]), group[0]) for group in middle]
    return points


def _fields(
    samples: int,
    v_sum: float,
    v_min: float,
    v_max: float,
    i_sum: float,
    noise_sum: float,
    noise_samples: int,
) -> dict[str, FieldValue]:
    """A minute's fields from its sums; ``noise_uohm_mean`` only when the cell sent noise."""
    fields: dict[str, FieldValue] = {
        "voltage_v_mean": v_sum / samples,
        "voltage_v_min": v_min,
        "voltage_v_max": v_max,
        "current_ka_mean": i_sum / samples,
        "samples": samples,
    }
    if noise_samples:
        fields["noise_uohm_mean"] = noise_sum / noise_samples
    return fields


def _minutes(sb: SampleBatch, calendar: Calendar) -> tuple[list[int], list[list[Any]]]:
    """The batch's sums per cell and minute as columns, each cell's minutes in time order.

    The columns: cell code, minute start, then ``Minute``'s sums in its field order. Before
    them, the rows where each cell's minutes begin.

    The batch sorted by (cell, time) and one ``reduceat`` per column: a run of equal cell and
    minute start is one group. Runs, not a sort by minute, so that a minute start that
    ever went backwards (a zone's offset cut by a non-whole minute) stays a group of its own.
    """
    if len(sb) == 0:
        return [], [[] for _ in range(9)]
    s = ByCell.of(sb)  # the sort the integrating processors make of the same batch
    code, voltage = s.code, s.v
    start = local_minute_starts(s.t, calendar)
    first = np.flatnonzero(np.r_[True, (code[1:] != code[:-1]) | (start[1:] != start[:-1])])
    codes = code[first]
    heads = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]).tolist()
    columns = [
        codes.tolist(),
        start[first].tolist(),
        np.diff(np.r_[first, len(code)]).tolist(),
        np.add.reduceat(voltage, first).tolist(),
        np.minimum.reduceat(voltage, first).tolist(),
        np.maximum.reduceat(voltage, first).tolist(),
        np.add.reduceat(s.i, first).tolist(),
    ]
    if not any(sb.extra):  # every recalculated batch: no noise sent
        return heads, [*columns, [0.0] * len(first), [0] * len(first)]
    noise = _noise(sb)[s.order()]
    sent = ~np.isnan(noise)
    return heads, [
        *columns,
        np.add.reduceat(np.where(sent, noise, 0.0), first).tolist(),
        np.add.reduceat(sent.astype(np.int64), first).tolist(),
    ]


def _noise(sb: SampleBatch) -> np.ndarray:
    """Each sample's ``noise_uohm`` from its ``extra``, NaN where it sent none."""
    values = (e.get(NOISE, np.nan) if e else np.nan for e in sb.extra)
    return np.fromiter(values, dtype=np.float64, count=len(sb))


def local_minute_starts(ts_ns: np.ndarray, calendar: Calendar) -> np.ndarray:
    """UTC nanoseconds of the start of the local minute that holds each time.

    The zone's offset is looked up once per UTC hour the times fall in (an offset changes
    at most once in an hour), and where it changes inside an hour the instant of the change
    is found by bisection, so every sample gets the offset in force at its own time.
    """
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    offset = zone_offsets_ns(ts_ns, ZoneInfo(calendar.timezone))
    local = ts_ns + offset
    result: np.ndarray = local - local % MINUTE_NS - offset
    return result


def zone_offsets_ns(ts_ns: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """The zone's UTC offset at each time, in nanoseconds.

    The hours between the first and last time are looked up in a table when they are no
    more than the times (an hour of a recalculation: 180,000 samples in one or two hours),
    which spares a sort of the hours; sparse times over a long span are grouped by hour.
    """
    if len(ts_ns) == 0:
        return np.zeros(0, dtype=np.int64)
    seconds = ts_ns // NS
    hour_of = seconds // HOUR_S
    h0, h1 = int(hour_of.min()), int(hour_of.max())
    if h1 - h0 < len(ts_ns):
        spans = [_hour_offsets(zone, hour) for hour in range(h0, h1 + 1)]
        if all(a == b for a, b in spans):
            table = np.array([a for a, _ in spans], dtype=np.int64) * NS
            offsets: np.ndarray = table[hour_of - h0]
            return offsets
    offset = np.empty(len(ts_ns), dtype=np.int64)
    for hour in np.unique(hour_of).tolist():
        at_lo, at_hi = _hour_offsets(zone, hour)
        inside = hour_of == hour
        if at_lo == at_hi:
            offset[inside] = at_lo * NS
            continue
        lo = hour * HOUR_S
        change = _change_at(zone, lo, lo + HOUR_S - 1, at_lo)
        offset[inside] = np.where(seconds[inside] < change, at_lo, at_hi) * NS
    return offset


def _hour_offsets(zone: ZoneInfo, hour: int) -> tuple[int, int]:
    """The offsets at the first and the last second of the UTC hour."""
    return _offset_s(zone, hour * HOUR_S), _offset_s(zone, (hour + 1) * HOUR_S - 1)


def _offset_s(zone: ZoneInfo, t_s: int) -> int:
    delta = datetime.fromtimestamp(t_s, zone).utcoffset()
    return 0 if delta is None else int(delta.total_seconds())


def _change_at(zone: ZoneInfo, lo: int, hi: int, before: int) -> int:
    """The first second in (lo, hi] whose offset is no longer ``before`` (offset(lo) is)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_s(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi
