"""How long a cell takes to settle after an anode change (contract 6.3): ``anode_settle``.

A new anode is cold and takes its share of the current slowly, so the cell's voltage rises
and comes back over hours; how far and how long tell how well the change was made. The
judgement is on one-minute means (``processors.kpi.settle_ring``), which one noisy sample
cannot end, and by the samples' own minutes, so it is the same whatever the arrival order:

- the *level* is the mean of the one-minute means of the 30 whole minutes before the
  change's minute (minutes c−30 … c−1); with fewer than ``MIN_PRE`` of them reported, the
  change gets no settle fields;
- minute k is minute c+k (k ≥ 1: the change's own minute, half before it, counts on neither
  side); a minute is *in band* when |mean − level| ≤ ``anode_settle_band_mv``; a minute
  without samples is not (it breaks a run);
- ``settle_min`` is the first k such that minutes k … k+9 are all in band, if k+9 ≤
  ``anode_settle_max_min``; otherwise ``settle_min`` is that maximum and ``settled`` false;
- ``peak_excess_mv`` is the largest (mean − level) over minutes 1 … settle_min−1 (all the
  followed minutes when unsettled), 0 when none is above the level.

A change is followed from its event, in the state (checkpointed, so SIGKILL loses
nothing), minute by minute as its cell's minutes close, and its fields are written to its
``anode_change`` point (same tags and time as the cycle's) once decided. Its month's
``anode_settle`` point of the cell is rewritten with it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.base import PeriodId
from processors.kpi.ledger import CellKey, Ledger, PeriodKey, period_at
from processors.kpi.periods import Calendar
from processors.kpi.settle_follow import Change, Settles, follow
from processors.kpi.settle_ring import LATE_MIN, MINUTE_NS, PRE_MIN, RING_MIN, Ring, View
from processors.model import AnodeChange, Batch, Event, FieldValue, Point

NS = 1_000_000_000
MEASUREMENT = "anode_settle"


@dataclass(frozen=True)
class SettleSettings:
    """What the processor needs of the config; built by ``collector.build``, no defaults.

    ``limits``: each configured potline's (band, mV; longest settling, minutes). A potline
    that is not configured gets no KPIs (it has no baseline), so no settling either.
    """

    calendar: Calendar
    limits: dict[str, tuple[float, int]]
    complete_grace_s: float


ChangeKey = tuple[CellKey, int, int]
"""A followed change: its cell, time and anode position."""
Month = dict[str, Settles]
"""A potline's month: each cell's settled and unsettled changes."""


@dataclass
class _State:
    ring: Ring = field(default_factory=Ring.empty)
    pending: dict[ChangeKey, Change] = field(default_factory=dict)
    ledger: Ledger[Month] = field(default_factory=Ledger)
    newest: int = 0

    @classmethod
    def of(cls, state: Any) -> _State:
        """The live state as it is, or one read from a checkpoint."""
        if isinstance(state, cls):
            return state
        if not state:
            return cls()
        changes = [Change.of(c) for c in state["pending"]]
        return cls(
            Ring.of(state["ring"]),
            {c.key: c for c in changes},
            Ledger.from_json(state["ledger"], lambda d: {k: Settles(*v) for k, v in d.items()}),
            state["newest"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ring": self.ring.to_json(),
            "pending": [c.to_json() for _, c in sorted(self.pending.items())],
            "ledger": self.ledger.to_json(lambda m: {k: v.to_json() for k, v in sorted(m.items())}),
            "newest": self.newest,
        }


class AnodeSettleProcessor:
    """Settle minutes and peak excess per anode change; their month per cell."""

    name = "anode_settle"
    instants = frozenset({"anode_change"})
    day_measurements = frozenset({"anode_change"})

    def __init__(self, settings: SettleSettings) -> None:
        self.s = settings
        self._grace_ns = int(settings.complete_grace_s * NS)

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Follow the batch's changes, add its minutes, write every change now decided."""
        st = _State.of(state)
        points: list[Point] = []
        fresh: set[CellKey] = set()
        for ev in sorted(
            (e for e in batch.events if e.type == "anode_change"), key=lambda e: e.ts_ns
        ):
            points += self._register(st, ev)
            fresh.add(CellKey(ev.potline, ev.cell))
        views = (  # the cells followed, only for samples: a cell's lookahead is a batch each
            st.ring.add(batch.samples, {c for c, _, _ in st.pending}) if len(batch.samples) else {}
        )
        judged = {st.ring.cells[row]: view for row, view in views.items()}
        for cell in fresh - judged.keys():
            row = st.ring.row(cell)
            if row is not None:  # a late change: its minutes have closed already
                judged[cell] = st.ring.view(row)
        if judged:
            by_cell: dict[CellKey, list[ChangeKey]] = {}
            for key in sorted(k for k in st.pending if k[0] in judged):
                by_cell.setdefault(key[0], []).append(key)
            for cell, view in sorted(judged.items()):
                points += self._follow(st, cell, view, by_cell.get(cell, []))
        newest = [st.newest, *(e.ts_ns for e in batch.events)]
        if len(batch.samples):
            newest.append(int(batch.samples.ts_ns.max()))
        st.newest = max(newest)
        for month, _ in st.ledger.items():
            if st.ledger.past_grace(month, st.newest, self._close_after_ns(month.potline)):
                st.ledger.close(month)  # its last point stands
        return st, points

    def checkpoint(self, state: Any) -> Any:
        """The state as JSON data: the ring's means as base64 bytes."""
        return _State.of(state).to_json()

    def rebase(self, state: Any, fresh: Any, periods: Collection[PeriodId]) -> Any:
        """The live state with these periods' months and followed changes from history.

        A change of the periods redone from raw samples (not a month: it is summed from its
        days' points) that history still follows replaces the live one (history has every
        sample the database holds, a backfill too); one history has decided or cannot judge
        is dropped, so that no live write undoes the recalculated point.
        """
        st, new = _State.of(state), _State.of(fresh)
        keys = [PeriodKey._make(p) for p in periods]
        st.ledger.rebase(new.ledger, [k for k in keys if k.kind == "month"])
        spans = [
            (k.potline, *period_at(self.s.calendar, k.kind, k.start_ns))
            for k in keys
            if k.kind != "month"
        ]

        def inside(key: ChangeKey) -> bool:
            return any(p == key[0].potline and a <= key[1] < b for p, a, b in spans)

        for key in [k for k in st.pending if inside(k)]:
            del st.pending[key]
        st.pending.update({k: c for k, c in new.pending.items() if inside(k)})
        return st

    def summed(
        self,
        fresh: Any,
        month: PeriodId,
        end_ns: int,
        days: Sequence[Point],
        events: Sequence[Event],
        now_ns: int,
    ) -> tuple[Any, list[Point]]:
        """The month's ``anode_settle`` from its ``anode_change`` points' settle fields."""
        key = PeriodKey._make(month)
        fields: dict[tuple[tuple[str, str], ...], dict[int, dict[str, FieldValue]]] = {}
        for p in days:
            if p.measurement == "anode_change" and key.start_ns <= p.time_ns < end_ns:
                fields.setdefault(p.tags, {}).setdefault(p.time_ns, {}).update(p.fields)
        acc: Month = {}
        for tags, by_time in fields.items():
            cell = dict(tags)["cell"]
            for f in by_time.values():
                if "settle_min" in f:
                    acc.setdefault(cell, Settles()).add(int(f["settle_min"]), bool(f["settled"]))
        st = _State.of(fresh)
        complete = st.ledger.closed(key, end_ns) or now_ns >= end_ns + self._close_after_ns(
            key.potline
        )
        st.ledger.put(key, end_ns, acc, closed=complete)
        return st, [_month_point(key, cell, s) for cell, s in sorted(acc.items())]

    def lookback(self, events: Sequence[Event], start_ns: int) -> dict[tuple[str, str], int]:
        """The cells with a change from ``start_ns`` on whose level begins before it.

        The level is the 30 whole minutes before the change's minute: a change in the first
        half hour of a recalculation needs its cell's samples from the first of them.
        """
        need: dict[tuple[str, str], int] = {}
        for ev in self._changes(events):
            first = (ev.ts_ns // MINUTE_NS - PRE_MIN) * MINUTE_NS
            if first < start_ns <= ev.ts_ns:
                key = (ev.potline, ev.cell)
                need[key] = min(need.get(key, first), first)
        return need

    def lookahead(self, events: Sequence[Event], end_ns: int) -> dict[tuple[str, str], int]:
        """The cells with a change whose longest settling may need samples from ``end_ns`` on.

        Minute c + max is the last one judged, and it closes with the cell's first sample
        of the minute after it: the samples up to that minute's end decide the change.
        """
        need: dict[tuple[str, str], int] = {}
        for ev in self._changes(events):
            last = (ev.ts_ns // MINUTE_NS + self.s.limits[ev.potline][1] + 2) * MINUTE_NS
            if end_ns < last:
                key = (ev.potline, ev.cell)
                need[key] = max(need.get(key, last), last)
        return need

    def _changes(self, events: Sequence[Event]) -> list[Event]:
        """The anode changes of the configured potlines: the only ones followed."""
        return [e for e in events if e.type == "anode_change" and e.potline in self.s.limits]

    def _register(self, st: _State, ev: Event) -> list[Point]:
        """Follow a change; its ``crew`` is written at once (it is no judgement)."""
        change = AnodeChange.of(ev)
        cell = CellKey(ev.potline, ev.cell)
        tags = (
            ("potline", ev.potline),
            ("cell", ev.cell),
            ("anode", str(change.anode)),
            ("block", change.block),
        )
        minute = ev.ts_ns // MINUTE_NS
        opened = st.ring.opened(cell)
        followed = Change(cell, ev.ts_ns, change.anode, tags, change.crew, minute)
        configured = ev.potline in self.s.limits
        if configured and (opened < 0 or minute - PRE_MIN >= opened - RING_MIN):  # not too late
            st.pending.setdefault(followed.key, followed)
        fields: dict[str, FieldValue] = {} if change.crew is None else {"crew": change.crew}
        return [Point("anode_change", tags, fields, ev.ts_ns)] if fields else []

    def _follow(self, st: _State, cell: CellKey, view: View, keys: list[ChangeKey]) -> list[Point]:
        """Judge the cell's followed changes on its closed minutes; write those decided."""
        limits = self.s.limits.get(cell.potline)
        if limits is None:
            return []  # a potline no longer configured: no KPIs
        band_uv, max_min = limits[0] * 1000.0, limits[1]
        points = []
        for key in keys:
            change = st.pending[key]
            verdict = follow(change, view, band_uv, max_min)
            if verdict is None:
                continue
            del st.pending[key]
            if verdict is False:
                continue  # too little reported before it: no level to settle to
            points.append(Point("anode_change", change.tags, change.fields(), change.ts_ns))
            points += self._count(st, change)
        return points

    def _count(self, st: _State, change: Change) -> list[Point]:
        """Add a decided change to its month; the month's point of the cell, if still open."""
        potline = change.cell.potline
        start, end = period_at(self.s.calendar, "month", change.ts_ns)
        key = PeriodKey(potline, "month", start)
        month = st.ledger.add(key, end, dict)
        if month is None:
            return []  # a closed month keeps its point
        settles = month.setdefault(change.cell.cell, Settles())
        settles.add(change.settle_min, change.settled)
        return [_month_point(key, change.cell.cell, settles)]

    def _close_after_ns(self, potline: str) -> int:
        """How long past its end a month may still receive a decided change, and the grace."""
        max_min = self.s.limits.get(potline, (0.0, 0))[1]
        return (max_min + LATE_MIN) * MINUTE_NS + self._grace_ns


def _month_point(key: PeriodKey, cell: str, s: Settles) -> Point:
    tags = (("potline", key.potline), ("cell", cell))
    return Point(MEASUREMENT, tags, s.fields(), key.start_ns)
