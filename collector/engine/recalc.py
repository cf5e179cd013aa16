"""Backfill and recalculation (contract 5.2): KPI periods redone from their whole history.

A KPI point is a function of all the data of its period. Live, the processors build it
incrementally from the data in the order it came, so data that arrives after its period
closed (a historian export, a controller that flushed its buffer late) cannot be added,
and a corrected current efficiency or baseline does not reach points already written.

The database holds the raw history of every cell, live and replayed, each sample once. So
a period is redone by running new instances of the KPI processors from an empty state over
the potline's raw samples and events, from a little before the earliest period (the last
interval before it, the anode changes that open the cycles it measures) to a little after
the last, and keeping their points of the periods asked for. The few cells that need
samples further out (a tap cycle since its previous tap, an anode change's level before it
or its settling after it) have those read alone, not the whole potline's. A month is not
read raw: its sums are those of its days (``Summing``), so only the days asked for are
redone from raw samples, and the month is added up from them and from its other days'
stored points. The live instance then continues its open periods from the same totals
(``Recomputable.rebase``), so its next write of today or this month includes the backfill
instead of undoing it.

Points of cells the request does not name are not written, so they stay exactly as they
were; potline points are sums over every cell and are always rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.engine.batch import empty_batch
from collector.engine.history import History
from collector.engine.targets import Span, Target, kept, merged, within
from processors.base import (
    Flushing,
    Followed,
    Preceded,
    Processor,
    Recomputable,
    Summing,
    checkpoint,
)
from processors.model import Batch, Event, FieldValue, Point

NS = 1_000_000_000
DAY_NS = 86_400 * NS


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
    """How far around the periods the whole potline's history is read, and in what steps.

    The samples a few cells need further out (a tap cycle's since its previous tap, an
    anode change's level before it and settling after it) are read for those cells alone:
    ``Preceded`` and ``Followed`` processors name them.
    """

    context_ns: int  # before and after the periods: the gap limit
    events_before_ns: int  # the anode changes that open the cycles of the periods
    step_ns: int  # one query's window of samples


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
        t0 = min(s.start_ns for s in spans) - r.context_ns
        t1 = min(max(s.end_ns for s in spans) + r.context_ns, self.now_ns + NS)
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
        months = [
            p
            for month in sorted(target.spans - raw.spans)
            for p in self._month(procs, raw, month, live, fresh, redone)
        ]
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
        points = redone + months
        if months or target.cells is not None:  # else the redone points are the target's
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
        batches = self.history.batches(raw.potline, t0, t1, self.reach.step_ns)
        before = self.history.events(raw.potline, t0 - self.reach.events_before_ns, t0)
        points = _apply(procs, Batch(empty_batch(), before), fresh)
        edges = any(isinstance(p, Preceded | Followed) for p in procs)
        inside = self.history.events(raw.potline, t0, t1) if edges else []
        samples = self._lookback(procs, [*before, *inside], t0, fresh)
        for batch in batches:
            samples += len(batch.samples)
            points += _apply(procs, batch, fresh)
            progress()
        samples += self._lookahead(procs, inside, t1, fresh, points)
        for proc in procs:
            if isinstance(proc, Flushing):
                fresh[proc.name], produced = proc.flush(fresh.get(proc.name))
                points += produced
        return points, samples

    def _lookback(
        self, procs: Sequence[Processor], events: list[Event], t0: int, fresh: dict[str, Any]
    ) -> int:
        """Feed ``Preceded`` processors the samples they need from before the window (``t0``).

        Only the cells each names, before the window's own; ``kept`` drops what they write.
        """
        samples = 0
        for proc in (p for p in procs if isinstance(p, Preceded)):
            needs = sorted(proc.lookback(events, t0).items())
            samples += self._feed(proc, [(key, since, t0) for key, since in needs], fresh)[0]
        return samples

    def _lookahead(
        self,
        procs: Sequence[Processor],
        events: list[Event],
        t1: int,
        fresh: dict[str, Any],
        points: list[Point],
    ) -> int:
        """Feed ``Followed`` processors the samples they need from after the window (``t1``).

        Only the cells each names, up to what the database can hold (now; the window may
        reach it already); what they write (a change late in the periods, judged) goes to
        ``points``.
        """
        samples = 0
        for proc in (p for p in procs if isinstance(p, Followed)):
            ends = [
                (key, min(until, self.now_ns + NS))
                for key, until in proc.lookahead(events, t1).items()
            ]
            n, made = self._feed(
                proc, [(key, t1, stop) for key, stop in sorted(ends) if stop > t1], fresh
            )
            samples += n
            points += made
        return samples

    def _feed(
        self,
        proc: Processor,
        windows: Sequence[tuple[tuple[str, str], int, int]],
        fresh: dict[str, Any],
    ) -> tuple[int, list[Point]]:
        """Apply ``proc`` to each (potline, cell)'s samples of its window, one cell at a time."""
        samples, made = 0, []
        for cells in self.history.each(windows):
            batch = Batch(cells, [])
            samples += len(batch.samples)
            fresh[proc.name], out = proc.apply(batch, fresh.get(proc.name))
            made += out
        return samples, made

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
        redone_spans = merged((s.start_ns, s.end_ns) for s in raw.spans)
        days = [p for key in sorted(by_day) for p in by_day[key]]
        days += [  # an instant's points (anode_change) of the days redone are the new ones
            p for p in stored if p.measurement in instants and not within(p.time_ns, redone_spans)
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
        of_instants = (p for p in points if p.measurement in instants)  # not the minutes
        for p in of_instants:  # one point may have fields of two processors (anode_change)
            made.setdefault((p.measurement, tuple(sorted(p.tags)), p.time_ns), {}).update(p.fields)
        stale = []
        for t0, t1 in merged((s.start_ns, s.end_ns) for s in target.spans):
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


def _apply(procs: Sequence[Processor], batch: Batch, states: dict[str, Any]) -> list[Point]:
    points: list[Point] = []
    for proc in procs:
        states[proc.name], produced = proc.apply(batch, states.get(proc.name))
        points += produced
    return points
