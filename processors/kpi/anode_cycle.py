"""Anode changes against the target cycle and block type, and the anodes overdue today.

These are the contract's ``anode_change`` and ``anode_potline``, and ``anode_overdue``.

Each (potline, cell, anode position) remembers its last change in the processor state,
which the engine checkpoints with the others: the cycle of the next change survives restarts,
and replaying older events seeds it. The settling of the cell's voltage after a change is
written to the same point by ``anode_settle``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from processors import legacy
from processors.base import PeriodId
from processors.kpi.ledger import (
    CellKey,
    Ledger,
    PeriodKey,
    cells_from_json,
    cells_to_json,
    flat,
    period_at,
)
from processors.kpi.periods import KINDS, Calendar
from processors.model import AnodeChange, Batch, Event, FieldValue, Point, SampleBatch

NS = 1_000_000_000
DAY_NS = 86_400 * NS


class Position(NamedTuple):
    """An anode position of a cell."""

    potline: str
    cell: str
    anode: int


@dataclass(frozen=True)
class AnodeTargets:
    """A potline's anode goals."""

    cycle_days: float
    tolerance_days: float
    block: str


@dataclass(frozen=True, kw_only=True)
class AnodeSettings:
    """What the processor needs of the config; built by ``collector.build``, no defaults.

    ``plant_targets`` are those of a potline that is not in ``targets`` (not configured).
    """

    calendar: Calendar
    targets: dict[str, AnodeTargets]
    plant_targets: AnodeTargets
    complete_grace_s: float
    kinds: tuple[str, ...] = KINDS


@dataclass(slots=True)
class Shares:
    """A potline period's changes: with a known cycle, their cycles, on target, right block."""

    changes: int = 0
    known: int = 0
    cycle_sum_days: float = 0.0
    on_target: int = 0
    target_block: int = 0


@dataclass
class _State:
    history: dict[Position, int] = field(default_factory=dict)
    ledger: Ledger[Shares] = field(default_factory=Ledger)
    newest: int = 0
    overdue_day: int = 0

    @classmethod
    def of(cls, state: Any) -> _State:
        """The live state as it is, or one read from a checkpoint (of any release)."""
        if isinstance(state, cls):
            return state
        state = legacy.upgraded(state, legacy.anode_cycle)
        if not state:
            return cls()
        by_cell = cells_from_json(state["history"], dict)
        return cls(
            {
                Position(*c, int(a)): t
                for c, by_anode in by_cell.items()
                for a, t in by_anode.items()
            },
            Ledger.from_json(state["ledger"], lambda d: Shares(**d)),
            state["newest"],
            state["overdue_day"],
        )

    def to_json(self) -> dict[str, Any]:
        history: dict[CellKey, dict[str, int]] = {}
        for pos, t in self.history.items():
            history.setdefault(CellKey(pos.potline, pos.cell), {})[str(pos.anode)] = t
        return {
            "history": cells_to_json(history, dict),
            "ledger": self.ledger.to_json(flat),
            "newest": self.newest,
            "overdue_day": self.overdue_day,
        }


class AnodeCycleProcessor:
    """Cycle, deviation and on-target flag per change; potline shares per period."""

    name = "anodes"
    instants = frozenset({"anode_change"})
    day_measurements = frozenset({"anode_potline"})

    def __init__(self, settings: AnodeSettings) -> None:
        self.s = settings
        self._grace_ns = int(settings.complete_grace_s * NS)

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Write each change, its potline's periods, and the overdue list once a day."""
        st = _State.of(state)
        points: list[Point] = []
        touched: set[PeriodKey] = set()
        for ev in sorted(
            (e for e in batch.events if e.type == "anode_change"), key=lambda e: e.ts_ns
        ):
            points.append(self._change(ev, st, touched))
        self._open_periods(st, batch.samples, touched)
        st.newest = max([st.newest, *(e.ts_ns for e in batch.events)])
        if len(batch.samples):
            st.newest = max(st.newest, int(batch.samples.ts_ns.max()))
        for key in sorted(touched):
            points.append(self._potline_point(key, st.ledger.periods[key].acc))
        for key, _ in st.ledger.items():
            if st.ledger.past_grace(key, st.newest, self._grace_ns):
                st.ledger.close(key)  # its last point stands
        day = self._day_start(st.newest) if st.newest else 0
        if day > st.overdue_day:
            points.extend(self._overdue(st.history, st.newest, day))
            st.overdue_day = day
        return st, points

    def rebase(self, state: Any, fresh: Any, periods: Collection[PeriodId]) -> Any:
        """The live state with these periods, and each position's newest change, from history.

        A backfilled change newer than the one the live state knows for its position is
        where the position's next cycle starts.
        """
        st, new = _State.of(state), _State.of(fresh)
        st.ledger.rebase(new.ledger, map(PeriodKey._make, periods))
        potlines = {p[0] for p in periods}
        for position, t in new.history.items():
            if position.potline in potlines and t > st.history.get(position, 0):
                st.history[position] = t
        return st

    def checkpoint(self, state: Any) -> Any:
        """The state as JSON data."""
        return _State.of(state).to_json()

    def snapshot(self, state: Any) -> list[Point]:
        """The potline points of the open periods, as they stand."""
        ledger = _State.of(state).ledger
        return [self._potline_point(key, period.acc) for key, period in ledger.items()]

    def _change(self, ev: Event, st: _State, touched: set[PeriodKey]) -> Point:
        change = AnodeChange.of(ev)
        position = Position(ev.potline, ev.cell, change.anode)
        previous = st.history.get(position)
        target = self.s.targets.get(ev.potline, self.s.plant_targets)
        fields: dict[str, FieldValue] = {"target_days": target.cycle_days}
        cycle = None
        if previous is None or ev.ts_ns > previous:
            st.history[position] = ev.ts_ns
            if previous is not None:
                cycle = (ev.ts_ns - previous) / DAY_NS
        if cycle is not None:
            deviation = cycle - target.cycle_days
            fields["cycle_days"] = cycle
            fields["deviation_days"] = deviation
            fields["on_target"] = abs(deviation) <= target.tolerance_days
        if change.butt_mm is not None:
            fields["butt_mm"] = change.butt_mm
        on_target = bool(fields.get("on_target", False))
        for kind in self.s.kinds:
            start, end = period_at(self.s.calendar, kind, ev.ts_ns)
            key = PeriodKey(ev.potline, kind, start)
            acc = st.ledger.add(key, end, Shares)
            if acc is None:
                continue  # a closed period keeps its counts
            acc.changes += 1
            acc.target_block += int(change.block == target.block)
            if cycle is not None:
                acc.known += 1
                acc.cycle_sum_days += cycle
                acc.on_target += int(on_target)
            touched.add(key)
        tags = (
            ("potline", ev.potline),
            ("cell", ev.cell),
            ("anode", str(change.anode)),
            ("block", change.block),
        )
        return Point("anode_change", tags, fields, ev.ts_ns)

    def _open_periods(self, st: _State, samples: SampleBatch, touched: set[PeriodKey]) -> None:
        """Open each potline's periods at their first sample, with ``changes`` 0.

        A day without changes has its point: an operator reads "No data" as cellmon broken.
        """
        if not len(samples):
            return
        index: dict[str, int] = {}  # potlines as small integers: no array of strings
        codes = [index.setdefault(p, len(index)) for p, _ in samples.cells]
        potlines = np.array(codes, dtype=np.int64)[samples.cell_id]
        for potline in sorted(index):
            t = samples.ts_ns[potlines == index[potline]]
            if not len(t):
                continue  # a cell named in the batch without a sample (a cut batch)
            t0, t1 = int(t.min()), int(t.max())
            for kind in self.s.kinds:
                starts = self.s.calendar.starts(kind, t0, t1)
                for start, end in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
                    key = PeriodKey(potline, kind, start)
                    if end <= t0 or start > t1 or key in st.ledger.periods:
                        continue
                    if st.ledger.add(key, end, Shares) is not None:
                        touched.add(key)

    def _potline_point(self, key: PeriodKey, acc: Shares) -> Point:
        fields: dict[str, FieldValue] = {"changes": acc.changes}
        if acc.changes:
            fields["target_block_share_pct"] = 100.0 * acc.target_block / acc.changes
            fields |= {"target_block": acc.target_block, "cycles_known": acc.known}
        if acc.known:
            fields["mean_cycle_days"] = acc.cycle_sum_days / acc.known
            fields["on_target_pct"] = 100.0 * acc.on_target / acc.known
            fields |= {"cycle_days_sum": acc.cycle_sum_days, "on_target": acc.on_target}
        tags = (("potline", key.potline), ("period", key.kind))
        return Point("anode_potline", tags, fields, key.start_ns)

    def _day_start(self, t_ns: int) -> int:
        return period_at(self.s.calendar, "day", t_ns)[0]

    def _overdue(self, history: Mapping[Position, int], now: int, day: int) -> list[Point]:
        """The positions whose last change is older than the target cycle and tolerance."""
        points = []
        for pos, last in sorted(history.items()):
            target = self.s.targets.get(pos.potline, self.s.plant_targets)
            age = (now - last) / DAY_NS
            late = age - target.cycle_days - target.tolerance_days
            if late > 0:
                tags = (("potline", pos.potline), ("cell", pos.cell), ("anode", str(pos.anode)))
                fields: dict[str, FieldValue] = {"days_since_change": age, "overdue_days": late}
                points.append(Point("anode_overdue", tags, fields, day))
        return points

    # a month from its days

    def summed(
        self,
        fresh: Any,
        month: PeriodId,
        end_ns: int,
        days: Sequence[Point],
        events: Sequence[Event],
        now_ns: int,
    ) -> tuple[Any, list[Point]]:
        """The month's shares from its days' counts: the mean cycle from the summed cycles.

        A day's sums are written only beside a count that says they are there
        (``cycles_known`` with ``changes`` > 0), so a field left over from an earlier write
        of the day is never read.
        """
        key = PeriodKey._make(month)
        if not days:
            return fresh, []
        acc = Shares()
        for p in days:
            if p.measurement == "anode_potline":
                _add_day(acc, p)
        st = _State.of(fresh)
        complete = st.ledger.closed(key, end_ns) or now_ns >= end_ns + self._grace_ns
        st.ledger.put(key, end_ns, acc, closed=complete)
        return st, [self._potline_point(key, acc)]


def _add_day(acc: Shares, day: Point) -> None:
    """A day's ``anode_potline`` sums added; one written before they were stored is refused."""
    f = day.fields
    changes = int(f["changes"])
    if not changes:
        return
    if "cycles_known" not in f:
        msg = (
            f"anode_potline of the day at {day.time_ns} has no sums (written by an older "
            "cellmon): recalculate the whole month, every day from raw samples"
        )
        raise ValueError(msg)
    acc.changes += changes
    acc.target_block += int(f["target_block"])
    acc.known += int(f["cycles_known"])
    if int(f["cycles_known"]):
        acc.cycle_sum_days += float(f["cycle_days_sum"])
        acc.on_target += int(f["on_target"])
