"""kWh per tonne per cell and potline, per shift, day and month.

These are the contract's ``sec_cell`` and ``sec_potline`` measurements.

Energy ∫U·I dt and charge ∫I dt are integrated over exactly the same intervals: between
consecutive in-order samples of a cell no further apart than ``max_gap_s``, by the
trapezoid rule, an interval that straddles a period boundary split there by linear
interpolation. A gap therefore lowers energy and production alike and never biases kWh/t.

A period's running values are rewritten (same point) whenever its cell's data advanced
``update_interval_s`` of event time, and written once more with ``complete = true`` when
every cell that contributed has passed its end, or when any cell of the potline is
``complete_grace_s`` past it (a silent controller must not hold the period open forever).
After that the period is closed: nothing arriving later changes it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any

from processors import legacy
from processors.base import PeriodId
from processors.kpi.energy import Goal, measured_ce_pct, sec_fields
from processors.kpi.integrate import LastSamples, integrate, last_from_json, last_to_json
from processors.kpi.ledger import (
    CellKey,
    Ledger,
    PeriodKey,
    period_at,
)
from processors.kpi.opportunity import KINDS as OPPORTUNITY_KINDS
from processors.kpi.opportunity import CellSums, opportunity_points
from processors.kpi.periods import KINDS, Calendar
from processors.model import Batch, Event, MetalTap, Point

NS = 1_000_000_000
DAY_NS = 86_400 * NS  # a day read back counts whole: a 23-hour day at most 1/30 more


@dataclass(frozen=True, kw_only=True)
class SecSettings:
    """What the processor needs of the config, and nothing else; built by ``collector.build``."""

    calendar: Calendar
    goals: dict[str, Goal]
    ae_thresholds_v: dict[str, float]  # the anode effects whose extra energy is counted
    max_gap_s: float
    update_interval_s: float
    complete_grace_s: float
    kinds: tuple[str, ...] = KINDS


@dataclass(slots=True)
class Totals:
    """A cell's sums over a period, and when and how its point was last written."""

    energy_kwh: float = 0.0
    charge_kah: float = 0.0
    covered_s: float = 0.0
    metal_kg: float = 0.0
    written_at_ns: int = 0
    complete: bool = False
    ae_energy_kwh: float = 0.0


Cells = dict[str, Totals]
"""A period's totals by cell name (the period's potline is in its key)."""
_WRITTEN_AT = attrgetter("written_at_ns")


def _cells_from_json(data: Mapping[str, Any]) -> Cells:
    return {cell: Totals(**t) for cell, t in data.items()}


def _cells_to_json(cells: Cells) -> dict[str, Any]:
    """Each cell's totals as a dict literal: ``flat`` per cell was half of a checkpoint."""
    return {
        cell: {
            "energy_kwh": t.energy_kwh,
            "charge_kah": t.charge_kah,
            "covered_s": t.covered_s,
            "metal_kg": t.metal_kg,
            "written_at_ns": t.written_at_ns,
            "complete": t.complete,
            "ae_energy_kwh": t.ae_energy_kwh,
        }
        for cell, t in cells.items()
    }


@dataclass
class _Step:
    """The state one ``apply`` works on, read anew from the JSON state."""

    last: LastSamples
    ledger: Ledger[Cells]
    touched: dict[PeriodKey, set[str]] = field(default_factory=dict)  # the cells, by period

    @classmethod
    def of(cls, state: Any) -> _Step:
        """The live state as it is (nothing touched yet), or one read from a checkpoint."""
        if isinstance(state, cls):
            state.touched = {}
            return state
        state = legacy.upgraded(state, _from_legacy) or {}
        ledger = Ledger.from_json(state.get("ledger"), _cells_from_json)
        return cls(last_from_json(state.get("last")), ledger)

    def state(self) -> dict[str, Any]:
        return {"last": last_to_json(self.last), "ledger": self.ledger.to_json(_cells_to_json)}

    def newest(self, potline: str, cell: str) -> int:
        last = self.last.get(CellKey(potline, cell))
        return 0 if last is None else last.ts_ns

    def newest_by_cell(self) -> dict[str, dict[str, int]]:
        """``{potline: {cell: newest ts}}``: one pass, not a keyed lookup per cell and period."""
        out: dict[str, dict[str, int]] = {}
        for (potline, cell), last in self.last.items():
            cells = out.get(potline)
            if cells is None:
                cells = out[potline] = {}
            cells[cell] = last.ts_ns
        return out


def _from_legacy(old: Mapping[str, Any]) -> dict[str, Any]:
    """The state of the previous release: positional [E, Q, S, M, written, complete]."""
    names = ("energy_kwh", "charge_kah", "covered_s", "metal_kg", "written_at_ns", "complete")

    def cells(period: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        totals = {c: dict(zip(names, acc, strict=True)) for c, acc in period["cells"].items()}
        for t in totals.values():
            t["written_at_ns"], t["complete"] = int(t["written_at_ns"]), bool(t["complete"])
        return period["end"], totals

    return {
        "last": legacy.last_samples(old.get("last", {})),
        "ledger": legacy.ledger(old, cells),
    }


class SecProcessor:
    """Integrates energy and production; writes ``sec_cell`` and ``sec_potline``."""

    name = "sec"
    instants: frozenset[str] = frozenset()
    day_measurements = frozenset({"sec_cell"})

    def __init__(self, settings: SecSettings) -> None:
        self.s = settings
        self._gap_ns = int(settings.max_gap_s * NS)
        self._update_ns = int(settings.update_interval_s * NS)
        self._grace_ns = int(settings.complete_grace_s * NS)

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Integrate the batch, record taps, and write what changed or closed."""
        step = _Step.of(state)
        self._integrate(batch, step)
        self._taps(batch, step)
        points = self._close_and_write(step, final=False)
        return step, points

    def flush(self, state: Any) -> tuple[Any, list[Point]]:
        """Write every open period's running values now (at shutdown, at a replay's end)."""
        step = _Step.of(state)
        step.touched = {key: set(p.acc) for key, p in step.ledger.items()}
        points = self._close_and_write(step, final=True)
        return step, points

    def checkpoint(self, state: Any) -> Any:
        """The state as JSON data."""
        return _Step.of(state).state()

    def rebase(self, state: Any, fresh: Any, periods: Collection[PeriodId]) -> Any:
        """The live state with these periods' totals from the state rebuilt from history."""
        step = _Step.of(state)
        step.ledger.rebase(_Step.of(fresh).ledger, map(PeriodKey._make, periods))
        return step

    def snapshot(self, state: Any) -> list[Point]:
        """The potline points of the open periods, with their cells' ranks, as they stand."""
        step = _Step.of(state)
        latest = {p: max(cells.values(), default=0) for p, cells in step.newest_by_cell().items()}
        return [
            point
            for key, period in step.ledger.items()
            for point in self._potline_points(
                key, period.acc, period.end_ns, latest.get(key.potline, 0), False
            )
        ]

    # integration

    def _integrate(self, batch: Batch, step: _Step) -> None:
        for sums in integrate(
            batch.samples,
            step.last,
            self.s.calendar,
            self.s.kinds,
            self._gap_ns,
            counts=self.s.goals.__contains__,
            thresholds=self.s.ae_thresholds_v,
        ):
            key = PeriodKey(sums.potline, sums.kind, sums.start_ns)
            cells = step.ledger.add(key, sums.end_ns, dict)
            if cells is None:
                continue  # that period is closed; its complete point stands
            touched = step.touched.get(key)
            if touched is None:
                touched = step.touched[key] = set()
            touched.update(sums.cells)
            for cell, e, q, s, x in zip(
                sums.cells,
                sums.energy_kwh,
                sums.charge_kah,
                sums.covered_s,
                sums.ae_energy_kwh,
                strict=True,
            ):
                totals = cells.get(cell)
                if totals is None:
                    totals = cells[cell] = Totals()
                totals.energy_kwh += e
                totals.charge_kah += q
                totals.covered_s += s
                totals.ae_energy_kwh += x

    def _totals(self, step: _Step, key: PeriodKey, end: int, cell: str) -> Totals | None:
        """The cell's totals of an open period; None if the period is closed."""
        cells = step.ledger.add(key, end, dict)
        if cells is None:
            return None  # that period is closed; its complete point stands
        step.touched.setdefault(key, set()).add(cell)
        return cells.setdefault(cell, Totals())

    def _taps(self, batch: Batch, step: _Step) -> None:
        if "month" not in self.s.kinds:
            return
        for ev in batch.events:
            if ev.type != "metal_tap" or ev.potline not in self.s.goals:
                continue
            start, end = period_at(self.s.calendar, "month", ev.ts_ns)
            totals = self._totals(step, PeriodKey(ev.potline, "month", start), end, ev.cell)
            if totals is not None:
                totals.metal_kg += MetalTap.of(ev).metal_kg

    # writing

    def _close_and_write(self, step: _Step, *, final: bool) -> list[Point]:
        """The points of the touched, closing or (``final``) all periods; closing ones close.

        Each cell of a period is looked at once per batch, so the newest times are read
        per potline first, and the touched cells per period.
        """
        by_cell = step.newest_by_cell()
        points: list[Point] = []
        update_ns, none = self._update_ns, frozenset[str]()
        for key, period in step.ledger.items():
            end = period.end_ns
            newest = by_cell.get(key.potline, {})
            latest = max(newest.values(), default=0)
            closing = step.ledger.past_grace(key, latest, self._grace_ns)
            closing = closing or all(newest.get(c, 0) >= end for c in period.acc)
            touched = step.touched.get(key, none)
            if not (closing or final or touched):
                continue
            if not (closing or final) and latest < end and not self._any_due(period.acc, latest):
                continue  # the usual batch: no cell done, none due (one C pass, not a loop)
            wrote = False
            for cell, totals in period.acc.items():
                cell_newest = newest.get(cell, 0)
                done = closing or cell_newest >= end
                due = cell in touched and cell_newest - totals.written_at_ns >= update_ns
                if (done and not totals.complete) or due or final:
                    totals.written_at_ns, totals.complete = cell_newest, done
                    points.append(self._cell_point(key, cell, totals, done))
                    wrote = True
            if wrote or closing:
                points += self._potline_points(key, period.acc, end, latest, closing)
            if closing:
                step.ledger.close(key)
        return points

    def _any_due(self, cells: Cells, latest_ns: int) -> bool:
        """Whether a cell of the period may be due for a write by ``latest_ns``."""
        oldest = min(map(_WRITTEN_AT, cells.values()), default=latest_ns)
        return latest_ns - oldest >= self._update_ns

    def _fields(self, key: PeriodKey, t: Totals, n_cells: int, complete: bool) -> dict[str, Any]:
        """The point's fields; a complete month with taps on its measured CE if so configured.

        A running month's taps lag its production (metal still in the cell), so only a
        complete one is recomputed on them.
        """
        goal = self.s.goals[key.potline]
        ce = measured_ce_pct(t.metal_kg, t.charge_kah) if key.kind == "month" else None
        measured = goal.measured_ce and complete and ce is not None and t.metal_kg > 0
        if measured and ce is not None:
            goal = replace(goal, current_efficiency=ce / 100.0)
        fields: dict[str, Any] = sec_fields(
            t.energy_kwh, t.charge_kah, t.covered_s / n_cells, goal, t.ae_energy_kwh
        )
        if measured:
            fields["ce_configured_pct"] = 100.0 * self.s.goals[key.potline].current_efficiency
        if key.kind == "month" and t.metal_kg > 0:
            fields["metal_t"] = t.metal_kg / 1000.0
            if ce is not None:
                fields["ce_measured_pct"] = ce
        fields["ce_basis"] = "measured" if measured else "configured"
        fields["complete"] = complete
        return fields

    def _cell_point(self, key: PeriodKey, cell: str, totals: Totals, complete: bool) -> Point:
        tags = (("potline", key.potline), ("cell", cell), ("period", key.kind))
        return Point("sec_cell", tags, self._fields(key, totals, 1, complete), key.start_ns)

    def _potline_points(
        self, key: PeriodKey, cells: Cells, end_ns: int, latest_ns: int, complete: bool
    ) -> list[Point]:
        """The potline's point, and for a day or month its cells against their median."""
        every = cells.values()
        total = Totals(
            sum(t.energy_kwh for t in every),
            sum(t.charge_kah for t in every),
            sum(t.covered_s for t in every),
            sum(t.metal_kg for t in every),
            ae_energy_kwh=sum(t.ae_energy_kwh for t in every),
        )
        n = max(1, sum(1 for t in every if t.covered_s > 0))
        fields = self._fields(key, total, n, complete)
        fields["cells"] = n
        ranked: list[Point] = []
        span = (end_ns if complete else min(end_ns, latest_ns)) - key.start_ns
        if key.kind in OPPORTUNITY_KINDS and span > 0:  # 0: a state that holds no sample
            sums = {c: CellSums(t.energy_kwh, t.charge_kah, t.covered_s) for c, t in cells.items()}
            basis = "ce_measured_pct" if fields["ce_basis"] == "measured" else "ce_configured_pct"
            ranked, excess_kwh = opportunity_points(
                key.potline, key.kind, key.start_ns, span, sums, fields[basis] / 100.0, complete
            )
            if ranked and fields["aluminium_t"] > 0:
                fields["opportunity_kwh_per_t"] = excess_kwh / fields["aluminium_t"]
        tags = (("potline", key.potline), ("period", key.kind))
        return [*ranked, Point("sec_potline", tags, fields, key.start_ns)]

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
        """The month's cell totals as the sums of the cells' day points, and its taps.

        Energy, charge, covered time and the effects' extra energy are sums over the same
        intervals, each split at midnight: a day's share of an interval is the part of it
        the month also has. kWh/t and every other ratio is computed from the sums again.
        """
        key = PeriodKey._make(month)
        if key.potline not in self.s.goals:
            return fresh, []
        cells: Cells = {}
        for p in days:
            if p.measurement == "sec_cell":
                f = p.fields
                t = cells.setdefault(dict(p.tags)["cell"], Totals())
                t.energy_kwh += float(f["energy_kwh"])
                t.charge_kah += float(f["charge_kah"])
                t.covered_s += 3600.0 * float(f["hours_covered"])
                t.ae_energy_kwh += float(f.get("ae_energy_kwh", 0.0))
        for ev in events:
            if ev.type == "metal_tap":
                cells.setdefault(ev.cell, Totals()).metal_kg += MetalTap.of(ev).metal_kg
        if not cells:
            return fresh, []
        step = _Step.of(fresh)
        complete = step.ledger.closed(key, end_ns) or now_ns >= end_ns + self._grace_ns
        for cell, t in cells.items():
            t.written_at_ns, t.complete = step.newest(key.potline, cell), complete
        points = [self._cell_point(key, c, t, complete) for c, t in sorted(cells.items())]
        # how far the month has got: its newest sample, or the end of its last day read back
        newest = step.newest_by_cell().get(key.potline, {}).values()
        days_end = max((p.time_ns + DAY_NS for p in days), default=key.start_ns)
        latest = max(max(newest, default=0), days_end)
        points += self._potline_points(key, cells, end_ns, latest, complete)
        step.ledger.put(key, end_ns, cells, closed=complete)
        return step, points
