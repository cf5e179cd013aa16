"""Where the savings are: each cell's voltage against its potline's median (contract 6.2).

A potline's kWh/t is the sum of its cells'. The cells above the median are where a process
engineer looks first: at the same current efficiency each millivolt above it costs
1e-3 / (0.33557e-3 × CE) kWh/t, about 3.2 kWh/t at CE 0.93 (domain.md). The median, not
the mean, so that the few cells far above it do not raise the bar they are measured against.

Numbers in, numbers out, from the period sums the kWh/t processor keeps anyway (energy,
charge and covered time per cell): no second pass over samples. A cell's mean voltage is
∫U·I dt / ∫I dt, the charge-weighted mean, the one its kWh/t is made of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from processors.kpi.energy import FARADAY_T_PER_KAH
from processors.model import Point

MIN_COVERED_SHARE = 0.5
"""A cell with less of the period covered is neither ranked nor part of the median."""


@dataclass(frozen=True, slots=True)
class CellSums:
    """What the median needs of one cell's period."""

    energy_kwh: float
    charge_kah: float
    covered_s: float


@dataclass(frozen=True, slots=True)
class Excess:
    """One cell's place against the potline's median over a period."""

    voltage_avg_v: float
    median_voltage_v: float
    voltage_excess_mv: float
    energy_excess_kwh: float
    sec_excess_kwh_per_t: float
    rank: int


def median(values: list[float]) -> float:
    """The middle value, or the mean of the two middle values of an even count."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def excesses(
    cells: Mapping[str, CellSums], period_s: float, current_efficiency: float
) -> dict[str, Excess]:
    """Each covered cell's excess over the median of the covered cells, ranked.

    Rank 1 is the largest energy excess; the cells at or below the median (energy excess
    0) follow by their voltage excess, largest first; a full tie by cell name, so that the
    ranks never depend on the order the cells were seen in.
    """
    need = MIN_COVERED_SHARE * period_s
    voltage = {
        cell: s.energy_kwh / s.charge_kah
        for cell, s in cells.items()
        if s.covered_s >= need and s.charge_kah > 0
    }
    if not voltage:
        return {}
    mid = median(list(voltage.values()))
    per_mv = 1.0 / (FARADAY_T_PER_KAH * current_efficiency)
    energy = {cell: max(0.0, u - mid) * cells[cell].charge_kah for cell, u in voltage.items()}
    order = sorted(voltage, key=lambda c: (-energy[c], -(voltage[c] - mid), c))
    return {
        cell: Excess(
            voltage_avg_v=voltage[cell],
            median_voltage_v=mid,
            voltage_excess_mv=1000.0 * (voltage[cell] - mid),
            energy_excess_kwh=energy[cell],
            sec_excess_kwh_per_t=(voltage[cell] - mid) * per_mv,
            rank=rank,
        )
        for rank, cell in enumerate(order, start=1)
    }


KINDS = frozenset({"day", "month"})
"""The periods ranked: a shift is too short for a cell's mean to stand out of its noise."""


def opportunity_points(
    potline: str,
    kind: str,
    start_ns: int,
    covered_of_ns: int,
    cells: Mapping[str, CellSums],
    current_efficiency: float,
    complete: bool,
) -> tuple[list[Point], float]:
    """The ``cell_opportunity`` points of a period, and the energy excess of them all, kWh.

    ``covered_of_ns`` is the span a cell must cover half of: the period's elapsed part while
    it is open, the whole period once complete.
    """
    ranked = excesses(cells, covered_of_ns / 1e9, current_efficiency)
    points = [
        Point(
            "cell_opportunity",
            (("potline", potline), ("cell", cell), ("period", kind)),
            {
                "voltage_avg_v": e.voltage_avg_v,
                "median_voltage_v": e.median_voltage_v,
                "voltage_excess_mv": e.voltage_excess_mv,
                "energy_excess_kwh": e.energy_excess_kwh,
                "sec_excess_kwh_per_t": e.sec_excess_kwh_per_t,
                "rank": e.rank,
                "complete": complete,
            },
            start_ns,
        )
        for cell, e in sorted(ranked.items())
    ]
    return points, sum(e.energy_excess_kwh for e in ranked.values())
