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

from dataclasses import dataclass, field
from typing import Any

from processors.energy import Goal, measured_ce_pct, sec_fields
from processors.integrate import integrate
from processors.model import Batch, Point
from processors.periods import KINDS, Calendar, period_index

NS = 1_000_000_000
# Per cell and period: energy kWh, charge kA·h, covered s, tapped metal kg, the event time
# of the last write, complete (0/1).
ENERGY, CHARGE, COVERED, METAL, WRITTEN_AT, COMPLETE = range(6)


@dataclass(frozen=True)
class SecSettings:
    """What the processor needs of the config, and nothing else."""

    calendar: Calendar
    goals: dict[str, Goal]
    max_gap_s: float = 60.0
    update_interval_s: float = 60.0
    complete_grace_s: float = 900.0
    kinds: tuple[str, ...] = KINDS


@dataclass
class _Step:
    """The mutable copy of the state one ``apply`` works on."""

    last: dict[str, list[float]]
    periods: dict[str, dict[str, Any]]
    done: dict[str, int]
    touched: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, state: dict[str, Any] | None) -> _Step:
        state = state or {}
        periods = {
            key: {"end": p["end"], "cells": {c: list(v) for c, v in p["cells"].items()}}
            for key, p in state.get("periods", {}).items()
        }
        return cls(dict(state.get("last", {})), periods, dict(state.get("done", {})))

    def state(self) -> dict[str, Any]:
        return {"last": self.last, "periods": self.periods, "done": self.done}


class SecProcessor:
    """Integrates energy and production; writes ``sec_cell`` and ``sec_potline``."""

    name = "sec"

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
        return step.state(), points

    def flush(self, state: Any) -> tuple[Any, list[Point]]:
        """Write every open period's running values now (at shutdown, at a replay's end)."""
        step = _Step.of(state)
        step.touched = {(key, cell) for key, p in step.periods.items() for cell in p["cells"]}
        return step.state(), self._close_and_write(step, final=True)

    # integration

    def _integrate(self, batch: Batch, step: _Step) -> None:
        for c in integrate(
            batch.samples,
            step.last,
            self.s.calendar,
            self.s.kinds,
            self._gap_ns,
            counts=self.s.goals.__contains__,
        ):
            values = (c.energy_kwh, c.charge_kah, c.covered_s, 0.0)
            self._add(step, c.cell_key, c.kind, c.start_ns, c.end_ns, values)

    def _add(
        self,
        step: _Step,
        cell_key: str,
        kind: str,
        start: int,
        end: int,
        values: tuple[float, float, float, float],
    ) -> None:
        potline, cell = cell_key.split("/", 1)
        if end <= step.done.get(f"{potline}|{kind}", 0):
            return  # that period is closed; its complete point stands
        key = f"{potline}|{kind}|{start}"
        period = step.periods.setdefault(key, {"end": end, "cells": {}})
        acc = period["cells"].setdefault(cell, [0.0, 0.0, 0.0, 0.0, 0, 0])
        for q, x in enumerate(values):
            acc[q] += x
        step.touched.add((key, cell))

    def _taps(self, batch: Batch, step: _Step) -> None:
        for ev in batch.events:
            if (
                ev.type != "metal_tap"
                or ev.potline not in self.s.goals
                or "month" not in self.s.kinds
            ):
                continue
            starts = self.s.calendar.starts("month", ev.ts_ns, ev.ts_ns)
            k = int(period_index(starts, [ev.ts_ns])[0])
            metal = float(ev.data["metal_kg"])
            self._add(
                step,
                f"{ev.potline}/{ev.cell}",
                "month",
                int(starts[k]),
                int(starts[k + 1]),
                (0.0, 0.0, 0.0, metal),
            )

    # writing

    def _close_and_write(self, step: _Step, *, final: bool) -> list[Point]:
        newest = _newest_by_potline(step.last)
        points: list[Point] = []
        touched_periods = {key for key, _ in step.touched}
        for key in list(step.periods):
            potline, kind, start = key.split("|")
            period = step.periods[key]
            end = period["end"]
            cells = period["cells"]
            tail = newest.get(potline, 0)
            closing = tail >= end + self._grace_ns or all(
                step.last.get(f"{potline}/{c}", [0])[0] >= end for c in cells
            )
            if not (closing or final or key in touched_periods):
                continue
            wrote = False
            for cell, acc in cells.items():
                cell_newest = int(step.last.get(f"{potline}/{cell}", [0])[0])
                done = closing or cell_newest >= end
                due = (key, cell) in step.touched and cell_newest - acc[
                    WRITTEN_AT
                ] >= self._update_ns
                if (done and not acc[COMPLETE]) or due or final:
                    acc[WRITTEN_AT], acc[COMPLETE] = cell_newest, int(done)
                    points.append(self._cell_point(potline, cell, kind, int(start), acc, done))
                    wrote = True
            if wrote or closing:
                points.append(self._potline_point(potline, kind, int(start), cells, closing))
            if closing:
                del step.periods[key]
                step.done[f"{potline}|{kind}"] = max(step.done.get(f"{potline}|{kind}", 0), end)
        return points

    def _fields(
        self, potline: str, kind: str, acc: list[float], n_cells: int, complete: bool
    ) -> dict[str, Any]:
        goal = self.s.goals[potline]
        fields: dict[str, Any] = sec_fields(acc[ENERGY], acc[CHARGE], acc[COVERED] / n_cells, goal)
        if kind == "month" and acc[METAL] > 0:
            fields["metal_t"] = acc[METAL] / 1000.0
            ce = measured_ce_pct(acc[METAL], acc[CHARGE])
            if ce is not None:
                fields["ce_measured_pct"] = ce
        fields["complete"] = complete
        return fields

    def _cell_point(
        self, potline: str, cell: str, kind: str, start: int, acc: list[float], complete: bool
    ) -> Point:
        tags = (("potline", potline), ("cell", cell), ("period", kind))
        return Point("sec_cell", tags, self._fields(potline, kind, acc, 1, complete), start)

    def _potline_point(
        self, potline: str, kind: str, start: int, cells: dict[str, list[float]], complete: bool
    ) -> Point:
        total = [sum(acc[q] for acc in cells.values()) for q in (ENERGY, CHARGE, COVERED, METAL)]
        n = max(1, sum(1 for acc in cells.values() if acc[COVERED] > 0))
        fields = self._fields(potline, kind, total, n, complete)
        fields["cells"] = n
        return Point("sec_potline", (("potline", potline), ("period", kind)), fields, start)


def _newest_by_potline(last: dict[str, list[float]]) -> dict[str, int]:
    newest: dict[str, int] = {}
    for cell_key, sample in last.items():
        potline = cell_key.split("/", 1)[0]
        newest[potline] = max(newest.get(potline, 0), int(sample[0]))
    return newest
