"""Backfill and recalculation (contract 5.2): KPI periods redone from their whole history.

A KPI point is a function of all the data of its period. Live, the processors build it
incrementally from the data in the order it came, so data that arrives after its period
closed (a historian export, a controller that flushed its buffer late) cannot be added,
and a corrected current efficiency or baseline does not reach points already written.

The database holds the raw history of every cell, live and replayed, each sample once. So
a period is redone by running new instances of the KPI processors from an empty state over
the potline's raw samples and events, from a little before the earliest period (the last
interval before it, the anode changes that open the cycles it measures) to a little after
the last, and keeping their points of the periods asked for. A month is not read raw: its
sums are those of its days (``Summing``), so only the days asked for are redone from raw
samples, and the month is added up from them and from its other days' stored points. The
live instance then
continues its open periods from the same totals (``Recomputable.rebase``), so its next
write of today or this month includes the backfill instead of undoing it.

Points of cells the request does not name are not written, so they stay exactly as they
were; potline points are sums over every cell and are always rewritten.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

import numpy as np

from collector.engine.batch import empty_batch
from collector.engine.history import History
from processors.base import (
    Flushing,
    PeriodId,
    Preceded,
    Processor,
    Recomputable,
    Summing,
    checkpoint,
)
from processors.kpi.periods import Calendar, period_index
from processors.model import Batch, Event, FieldValue, Point

NS = 1_000_000_000
DAY_NS = 86_400 * NS


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


@dataclass
class Outcome:
    """What redoing a potline's periods gave: points to write and the live states to keep."""

    points: list[Point]
    states: dict[str, Any]
    samples: int
    stale: list[Point] = field(default_factory=list)
    """Event points stored before that the periods' whole history no longer makes."""


@dataclass(frozen=True, kw_only=True)
class Reach:
    """How far around the periods history is read, and in what steps."""

    context_ns: int  # before and after the periods: the gap limit
    events_before_ns: int  # the anode changes that open the cycles of the periods
    step_ns: int  # one query's window of samples
    before_ns: int = 0  # samples before the periods: the level before a change (6.3)
    after_ns: int = 0  # and after them: the settling of a change late in the last one


class Recalculation:
    """Redoes the periods of one target with new processors over the database's history."""

    def __init__(
        self,
        processors: Callable[[], Sequence[Processor]],
        history: History,
        reach: Reach,
        *,
        now_ns: int,
    ) -> None:
        """``processors`` builds new instances of the processors to redo."""
        self.processors = processors
        self.history = history
        self.reach = reach
        self.now_ns = now_ns
        self.summing = any(isinstance(p, Summing) for p in processors())

    def raw(self, target: Target) -> Target:
        """The part of a target redone from raw samples: all but the months, when summed."""
        if not self.summing:
            return target
        spans = {s for s in target.spans if s.kind != "month"}
        return Target(target.potline, spans, target.cells)

    def windows(self, target: Target) -> tuple[int, int, int]:
        """(first instant, end, number of sample windows) of the history a target reads."""
        spans = self.raw(target).spans
        if not spans:
            return 0, 0, 0
        r = self.reach
        t0 = min(s.start_ns for s in spans) - max(r.context_ns, r.before_ns)
        t1 = min(max(s.end_ns for s in spans) + max(r.context_ns, r.after_ns), self.now_ns + NS)
        return t0, t1, max(0, -(-(t1 - t0) // r.step_ns))

    def run(
        self, target: Target, live: Mapping[str, Any], progress: Callable[[], None] = lambda: None
    ) -> Outcome:
        """The target's points, and ``live`` (states by name) continued from them.

        ``progress`` is called after each window of history.
        """
        procs = list(self.processors())
        raw = self.raw(target)
        fresh: dict[str, Any] = {}
        made, samples = self._from_raw(procs, raw, fresh, progress) if raw.spans else ([], 0)
        redone = kept(made, Target(raw.potline, raw.spans))  # every cell: a month sums them all
        points = list(redone)
        for month in sorted(target.spans - raw.spans):
            points += self._month(procs, raw, month, live, fresh, redone)
        # a processor that does not sum its months redid only the raw periods' data
        states = {
            p.name: p.rebase(
                live.get(p.name),
                fresh.get(p.name),
                target.periods if isinstance(p, Summing) else raw.periods,
            )
            for p in procs
            if isinstance(p, Recomputable)
        }
        points = kept(points, target)
        instants = sorted(set().union(*(p.instants for p in procs if isinstance(p, Recomputable))))
        return Outcome(points, states, samples, self._stale(raw, instants, points))

    def _from_raw(
        self,
        procs: Sequence[Processor],
        raw: Target,
        fresh: dict[str, Any],
        progress: Callable[[], None],
    ) -> tuple[list[Point], int]:
        """New processors run over the raw history of these periods; their points, samples."""
        t0, t1, _ = self.windows(raw)
        before = self.history.events(raw.potline, t0 - self.reach.events_before_ns, t0)
        points = _apply(procs, Batch(empty_batch(), before), fresh)
        samples = self._lookback(procs, raw.potline, before, (t0, t1), fresh)
        for batch in self.history.batches(raw.potline, t0, t1, self.reach.step_ns):
            samples += len(batch.samples)
            points += _apply(procs, batch, fresh)
            progress()
        for proc in procs:
            if isinstance(proc, Flushing):
                fresh[proc.name], produced = proc.flush(fresh.get(proc.name))
                points += produced
        return points, samples

    def _lookback(
        self,
        procs: Sequence[Processor],
        potline: str,
        before: list[Event],
        window: tuple[int, int],
        fresh: dict[str, Any],
    ) -> int:
        """Feed ``Preceded`` processors the samples they need from before the periods.

        Only the cells each names, before the periods' own; ``kept`` drops what they write.
        """
        (t0, t1), samples = window, 0
        for proc in (p for p in procs if isinstance(p, Preceded)):
            taps = self.history.events(potline, t0, t1, "metal_tap")
            for (p, cell), since in sorted(proc.lookback([*before, *taps], t0).items()):
                batch = Batch(self.history.samples(p, since, t0, cell=cell), [])
                samples += len(batch.samples)
                fresh[proc.name], _ = proc.apply(batch, fresh.get(proc.name))
        return samples

    def _month(
        self,
        procs: Sequence[Processor],
        raw: Target,
        month: Span,
        live: Mapping[str, Any],
        fresh: dict[str, Any],
        redone: Sequence[Point],
    ) -> list[Point]:
        """The month's points from its days' sums, and its totals in ``fresh``.

        Each day's points of a measurement are taken whole from the freshest source that has
        them: the days just redone, else the days the live instance still has open (its
        running values, which it writes only every ``kpi_update_s``), else those stored.
        A month made of instants (``anode_settle`` of its ``anode_change`` points) takes
        those redone in the raw periods and those stored in the rest of the month.
        """
        potline = raw.potline
        summing = [p for p in procs if isinstance(p, Summing)]
        measurements = set().union(*(p.day_measurements for p in summing))
        instants = measurements & set().union(*(p.instants for p in summing))
        stored = [
            p
            for m in sorted(measurements)
            for p in (
                self.history.stored(m, potline, month.start_ns, month.end_ns)
                if m in instants
                else self.history.days(m, potline, month.start_ns, month.end_ns)
            )
        ]
        running = [  # flushed from a copy: an InMemory live state would be marked written
            p
            for proc in summing
            if isinstance(proc, Flushing)
            for p in proc.flush(checkpoint(proc, live.get(proc.name)))[1]
        ]
        by_day: dict[tuple[int, str], list[Point]] = {}
        for source in (stored, running, redone):
            by_day.update(_days_of(source, potline, month, measurements - instants))
        redone_spans = _merged((s.start_ns, s.end_ns) for s in raw.spans)
        days = [p for key in sorted(by_day) for p in by_day[key]]
        days += [  # an instant's points (anode_change) of the days redone are the new ones
            p for p in stored if p.measurement in instants and not _within(p.time_ns, redone_spans)
        ]
        days += [p for p in redone if p.measurement in instants]
        taps = self.history.events(potline, month.start_ns, month.end_ns, "metal_tap")
        points: list[Point] = []
        period = (potline, month.kind, month.start_ns)
        for proc in summing:
            fresh[proc.name], made = proc.summed(
                fresh.get(proc.name), period, month.end_ns, days, taps, self.now_ns
            )
            points += made
        return points

    def _stale(self, target: Target, instants: Sequence[str], points: list[Point]) -> list[Point]:
        """The target's stored points of these measurements that the redo does not make again.

        An anode effect whose start moved, or two merged into one, leaves its old point
        beside the new one: the boards would count it twice. A point made again with fewer
        fields (no longer ``interrupted``) is stale too: a write replaces only the fields
        it has, so it is deleted and written anew.
        """
        made: dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, FieldValue]] = {}
        for p in points:  # one point may have fields of two processors (anode_change)
            made.setdefault((p.measurement, tuple(sorted(p.tags)), p.time_ns), {}).update(p.fields)
        stale = []
        for t0, t1 in _merged((s.start_ns, s.end_ns) for s in target.spans):
            for measurement in instants:
                for point in self.history.stored(measurement, target.potline, t0, t1):
                    cell = dict(point.tags).get("cell")
                    if target.cells is not None and cell not in target.cells:
                        continue
                    fields = made.get((point.measurement, point.tags, point.time_ns))
                    if fields is None or not point.fields.keys() <= fields.keys():
                        stale.append(point)
        return stale


def _days_of(
    points: Iterable[Point], potline: str, month: Span, measurements: Collection[str]
) -> dict[tuple[int, str], list[Point]]:
    """The month's day points of these measurements of the potline, by day and measurement."""
    out: dict[tuple[int, str], list[Point]] = {}
    for p in points:
        tags = dict(p.tags)
        if (
            p.measurement in measurements
            and tags.get("period") == "day"
            and tags.get("potline") == potline
            and month.start_ns <= p.time_ns < month.end_ns
        ):
            out.setdefault((p.time_ns, p.measurement), []).append(p)
    return out


def _within(t_ns: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether the instant lies in one of the merged ranges."""
    k = bisect.bisect_right([a for a, _ in ranges], t_ns) - 1
    return k >= 0 and t_ns < ranges[k][1]


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ranges joined: each instant of the periods read once."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _apply(procs: Sequence[Processor], batch: Batch, states: dict[str, Any]) -> list[Point]:
    points: list[Point] = []
    for proc in procs:
        states[proc.name], produced = proc.apply(batch, states.get(proc.name))
        points += produced
    return points


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
    merged = _merged((s.start_ns, s.end_ns) for s in target.spans)
    bounds = [a for a, _ in merged]
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
            inside = k >= 0 and p.time_ns < merged[k][1]
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
