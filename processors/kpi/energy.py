"""The energy formulas: DC energy, Faraday production and kWh per tonne (domain.md).

Plain functions of numbers: no clock, no state, no I/O, so each can be checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Faraday: M / (z F) = 26.9815 g/mol / (3 × 96485.33 C/mol) × 3.6e6 C per kA·h = 0.33557 kg.
FARADAY_T_PER_KAH = 0.33557e-3
NS_PER_H = 3_600_000_000_000
NS_PER_S = 1_000_000_000


def aluminium_t(charge_kah: float, current_efficiency: float) -> float:
    """Metal won from a charge: 0.33557e-3 t per kA·h at 100 % current efficiency."""
    return FARADAY_T_PER_KAH * charge_kah * current_efficiency


def kwh_per_tonne(energy_kwh: float, aluminium: float) -> float | None:
    """Specific energy consumption; None when nothing was produced."""
    return energy_kwh / aluminium if aluminium > 0 else None


def hours(t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """The length in hours of each interval [t0, t1] of nanoseconds."""
    length: np.ndarray = (t1 - t0) / NS_PER_H
    return length


def seconds(t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """The length in seconds of each interval [t0, t1] of nanoseconds: the time covered."""
    length: np.ndarray = (t1 - t0) / NS_PER_S
    return length


def trapezoids(h: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """∫ of a quantity linear from p0 to p1 over intervals of ``h`` hours, in unit × hours.

    The hours are an argument, not the instants: one interval's energy, charge and
    effects' extra share them.
    """
    area: np.ndarray = (p0 + p1) * 0.5 * h
    return area


def interval_sums(
    t0: np.ndarray,
    t1: np.ndarray,
    power: tuple[np.ndarray, np.ndarray],
    current: tuple[np.ndarray, np.ndarray],
    extra: tuple[np.ndarray, np.ndarray],
    effects: bool,
) -> list[np.ndarray]:
    """Energy kWh, charge kA·h, covered s and effects' extra kWh of intervals [t0, t1].

    ``power`` is U·I, ``current`` I and ``extra`` (U − U_before) · I at both ends of each
    interval. Without anode-effect thresholds (``effects`` False: the tap cycles' and the
    anode effects' own charge) the extra is 0 and is not integrated.
    """
    h = hours(t0, t1)
    return [
        trapezoids(h, *power),
        trapezoids(h, *current),
        seconds(t0, t1),
        trapezoids(h, *extra) if effects else np.zeros(len(h)),
    ]


@dataclass(frozen=True, slots=True)
class Goal:
    """What a potline's kWh/t is measured against.

    ``baseline_voltage_v`` (optional) is the mean cell voltage of the baseline: with it the
    savings split into a voltage part and a current-efficiency part. ``measured_ce``: a
    complete month is computed on the current efficiency of its tapped metal.
    ``rectifier_efficiency`` (optional) gives the AC figures beside the DC ones.
    """

    current_efficiency: float
    baseline_kwh_per_t: float
    savings_goal_kwh_per_t: float
    tariff_cny_per_kwh: float
    baseline_voltage_v: float | None = None
    measured_ce: bool = False
    rectifier_efficiency: float | None = None


def sec_fields(
    energy_kwh: float,
    charge_kah: float,
    covered_s: float,
    goal: Goal,
    ae_energy_kwh: float = 0.0,
) -> dict[str, float]:
    """The KPI fields of contract sections 2 and 5.3 for one cell or potline and period.

    ``sec_kwh_per_t`` and the fields derived from it are absent when nothing was produced;
    the ratios over charge or time when there is none.
    """
    metal = aluminium_t(charge_kah, goal.current_efficiency)
    fields = {
        "energy_kwh": energy_kwh,
        "hours_covered": covered_s / 3600.0,
        "aluminium_t": metal,
        "baseline_kwh_per_t": goal.baseline_kwh_per_t,
        "target_kwh_per_t": goal.baseline_kwh_per_t - goal.savings_goal_kwh_per_t,
        "goal_kwh_per_t": goal.savings_goal_kwh_per_t,
        "charge_kah": charge_kah,
        "ae_energy_kwh": ae_energy_kwh,
        "ce_configured_pct": 100.0 * goal.current_efficiency,
    }
    if covered_s > 0:
        fields["current_avg_ka"] = charge_kah / (covered_s / 3600.0)
    if charge_kah > 0:
        fields["voltage_avg_v"] = energy_kwh / charge_kah
        fields["ae_voltage_mv"] = 1000.0 * ae_energy_kwh / charge_kah
    sec = kwh_per_tonne(energy_kwh, metal)
    if sec is not None:
        savings = goal.baseline_kwh_per_t - sec
        fields["sec_kwh_per_t"] = sec
        fields["savings_kwh_per_t"] = savings
        fields["goal_pct"] = 100.0 * savings / goal.savings_goal_kwh_per_t
        fields["energy_saved_kwh"] = savings * metal
        fields["cost_saved_cny"] = savings * metal * goal.tariff_cny_per_kwh
        fields["ae_kwh_per_t"] = ae_energy_kwh / metal
        if goal.baseline_voltage_v is not None:
            fields |= savings_split(energy_kwh / charge_kah, savings, goal)
        if goal.rectifier_efficiency is not None:
            fields["sec_ac_kwh_per_t"] = sec / goal.rectifier_efficiency
    if goal.rectifier_efficiency is not None:
        fields["energy_ac_kwh"] = energy_kwh / goal.rectifier_efficiency
    return fields


def savings_split(voltage_avg_v: float, savings: float, goal: Goal) -> dict[str, float]:
    """The savings as bought by a lower voltage and by a better current efficiency.

    SEC = U / (F × CE), so SEC_b − SEC = (U_b − U) / (F × CE_b) + U × (1/CE_b − 1/CE) / F
    with CE_b = U_b / (F × SEC_b), the efficiency the baseline's voltage implies. The
    current-efficiency part is taken as the rest, so the two add up to the savings.
    """
    assert goal.baseline_voltage_v is not None
    ce_b = goal.baseline_voltage_v / (FARADAY_T_PER_KAH * goal.baseline_kwh_per_t)
    voltage = (goal.baseline_voltage_v - voltage_avg_v) / (FARADAY_T_PER_KAH * ce_b)
    return {"savings_voltage_kwh_per_t": voltage, "savings_ce_kwh_per_t": savings - voltage}


def measured_ce_pct(metal_kg: float, charge_kah: float) -> float | None:
    """Current efficiency implied by tapped metal over the theoretical Faraday production."""
    theoretical_kg = FARADAY_T_PER_KAH * 1000.0 * charge_kah
    return 100.0 * metal_kg / theoretical_kg if theoretical_kg > 0 else None
