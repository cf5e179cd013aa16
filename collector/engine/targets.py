"""What a recalculation redoes and keeps: a potline's periods, and the points inside them.

Apart from the recalculation itself (``collector.engine.recalc``) because the commands
that file requests (``replay``, ``recalc``, ``deadletter replay``) need only the periods
a set of rows touches, not the history reader and processors that redo them.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

import numpy as np

from processors.base import PeriodId
from processors.kpi.periods import Calendar, period_index
from processors.model import Point


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """One KPI period of a potline: its kind and its UTC bounds."""

    kind: str
    start_ns: int
    end_ns: int


@dataclass
class Target:
    """A potline's periods to redo, and the cells whose points are rewritten (None: all)."""

    potline: str
    spans: set[Span] = field(default_factory=set)
    cells: set[str] | None = None

    @property
    def periods(self) -> list[PeriodId]:
        """The periods as the processors key them."""
        return [(self.potline, s.kind, s.start_ns) for s in sorted(self.spans)]

    def to_json(self) -> dict[str, Any]:
        """The request form, filed in the journal."""
        return {
            "potline": self.potline,
            "spans": [[s.kind, s.start_ns, s.end_ns] for s in sorted(self.spans)],
            "cells": None if self.cells is None else sorted(self.cells),
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Target:
        """The target a filed request holds."""
        cells = data["cells"]
        spans = {Span(k, int(a), int(b)) for k, a, b in data["spans"]}
        return cls(data["potline"], spans, None if cells is None else set(cells))


def touched(
    calendar: Calendar,
    kinds: Sequence[str],
    rows: Mapping[str, tuple[set[str], np.ndarray]],
    margin_ns: int,
) -> list[Target]:
    """The periods that rows at these times change: ``{potline: (cells, ts_ns)}``.

    A row also changes the intervals to its neighbours, up to ``margin_ns`` (the gap limit)
    away, which may lie in the period before or after its own.
    """
    targets = []
    for potline, (cells, ts) in sorted(rows.items()):
        if not len(ts):
            continue
        near = np.unique(np.concatenate([ts - margin_ns, ts, ts + margin_ns]))
        target = Target(potline, cells=set(cells))
        for kind in kinds:
            starts = calendar.starts(kind, int(near[0]), int(near[-1]))
            for k in np.unique(period_index(starts, near)).tolist():
                target.spans.add(Span(kind, int(starts[k]), int(starts[k + 1])))
        targets.append(target)
    return targets


def days(
    calendar: Calendar, kinds: Sequence[str], potlines: Iterable[str], first: date, last: date
) -> list[Target]:
    """Every period of these local days, for ``cellmon recalc --from --to``."""
    t0 = calendar.local_instant(first, time(0))
    t1 = calendar.local_instant(last + timedelta(days=1), time(0))
    targets = []
    for potline in sorted(potlines):
        target = Target(potline)
        for kind in kinds:
            starts = calendar.starts(kind, t0, t1 - 1)
            for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
                if a < t1 and b > t0:
                    target.spans.add(Span(kind, int(a), int(b)))
        targets.append(target)
    return targets


def within(t_ns: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether the instant lies in one of the merged ranges."""
    k = bisect.bisect_right([a for a, _ in ranges], t_ns) - 1
    return k >= 0 and t_ns < ranges[k][1]


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ranges joined: each instant of the periods read once."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def kept(points: Iterable[Point], target: Target) -> list[Point]:
    """The last point of each series and time that belongs to the target.

    The last point's fields over the earlier ones': two processors write fields of one
    point (the cycle and the settling of an ``anode_change``), and InfluxDB keeps both.

    A point with a ``period`` tag belongs when its period is one of the target's; any other
    (an anode change, an anode effect, a minute) when its time lies in one of the target's
    periods. A day's redo makes over half a million minute points of a few hundred series,
    so each series' tags are looked at once and each time found by bisection.
    """
    starts: Collection[tuple[str, int]] = {(s.kind, s.start_ns) for s in target.spans}
    ranges = merged((s.start_ns, s.end_ns) for s in target.spans)
    bounds = [a for a, _ in ranges]
    series: dict[tuple[tuple[str, str], ...], str | bool | None] = {}
    last: dict[tuple[str, tuple[tuple[str, str], ...], int], Point] = {}
    for p in points:
        kind = series.get(p.tags, True)
        if kind is True:
            kind = series[p.tags] = _kind(p.tags, target)
        if kind is False:
            continue
        if kind is not None:
            inside = (kind, p.time_ns) in starts
        else:
            k = bisect.bisect_right(bounds, p.time_ns) - 1
            inside = k >= 0 and p.time_ns < ranges[k][1]
        if inside:
            key = (p.measurement, p.tags, p.time_ns)
            before = last.get(key)
            if before is not None and not before.fields.keys() <= p.fields.keys():
                p = Point(p.measurement, p.tags, {**before.fields, **p.fields}, p.time_ns)
            last[key] = p
    return list(last.values())


def _kind(tags: tuple[tuple[str, str], ...], target: Target) -> str | bool | None:
    """A series' period kind (None: an instant's series), or False if not the target's."""
    d = dict(tags)
    cell = d.get("cell")
    if d.get("potline") != target.potline:
        return False
    if cell is not None and target.cells is not None and cell not in target.cells:
        return False
    return d.get("period")
