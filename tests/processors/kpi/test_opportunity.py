"""Cells against their potline's median voltage, worked out by hand (contract 6.2)."""

from __future__ import annotations

import pytest

from processors.kpi.opportunity import CellSums, excesses, median

DAY_S = 86_400.0
CE = 0.93


def day_of(volts: float, current_ka: float = 300.0, hours: float = 24.0) -> CellSums:
    """A cell at a constant voltage and current for ``hours``: Q = I·h, E = U·Q."""
    charge = current_ka * hours
    return CellSums(energy_kwh=volts * charge, charge_kah=charge, covered_s=hours * 3600.0)


def test_five_cells_of_a_day() -> None:
    cells = {
        "C1": day_of(4.10),
        "C2": day_of(4.15),
        "C3": day_of(4.20),
        "C4": day_of(4.30),
        "C5": day_of(4.25),
        "C6": day_of(5.00, hours=11.9),  # less than half the day covered: left out
    }
    got = excesses(cells, DAY_S, CE)
    assert set(got) == {"C1", "C2", "C3", "C4", "C5"}
    # the median of 4.10, 4.15, 4.20, 4.25, 4.30 is 4.20 V; a charge of 300 kA × 24 h
    # = 7,200 kA·h; 1 V above the median costs 1 / (0.33557e-3 × 0.93) = 1 / 3.120801e-4
    # = 3204.306 kWh/t
    per_v = 1 / (0.33557e-3 * 0.93)
    expected = {
        # cell: (excess mV, energy excess kWh, rank)
        "C4": (100.0, 0.10 * 7200, 1),
        "C5": (50.0, 0.05 * 7200, 2),
        "C3": (0.0, 0.0, 3),
        "C2": (-50.0, 0.0, 4),
        "C1": (-100.0, 0.0, 5),
    }
    for cell, (mv, kwh, rank) in expected.items():
        e = got[cell]
        assert e.median_voltage_v == pytest.approx(4.20, abs=1e-9)
        assert e.voltage_excess_mv == pytest.approx(mv, abs=1e-6)
        assert e.energy_excess_kwh == pytest.approx(kwh, abs=1e-6)
        assert e.sec_excess_kwh_per_t == pytest.approx(mv / 1000 * per_v, abs=1e-6)
        assert e.rank == rank
    assert got["C4"].sec_excess_kwh_per_t == pytest.approx(320.4306, abs=1e-4)


def test_an_even_count_takes_the_mean_of_the_two_middle_cells() -> None:
    cells = {"A": day_of(4.10), "B": day_of(4.16), "C": day_of(4.24), "D": day_of(4.40)}
    got = excesses(cells, DAY_S, CE)
    # middle values 4.16 and 4.24: median 4.20
    assert got["D"].median_voltage_v == pytest.approx(4.20, abs=1e-9)
    assert got["D"].voltage_excess_mv == pytest.approx(200.0, abs=1e-6)
    assert got["C"].energy_excess_kwh == pytest.approx(0.04 * 7200, abs=1e-6)


def test_the_energy_excess_is_on_the_cells_own_charge() -> None:
    # the same 100 mV above the median on half the current costs half the energy: a cell
    # on a lower current ranks below one with a smaller excess at full current
    cells = {
        "low": day_of(4.30, current_ka=150.0),
        "full": day_of(4.26),
        **{f"m{k}": day_of(4.20) for k in (1, 2, 3)},
    }
    got = excesses(cells, DAY_S, CE)
    # median 4.20 V: 0.10 V × 150 kA × 24 h = 360 kWh against 0.06 V × 7,200 kA·h = 432
    assert got["low"].energy_excess_kwh == pytest.approx(360.0, abs=1e-6)
    assert got["full"].energy_excess_kwh == pytest.approx(432.0, abs=1e-6)
    assert [got[c].rank for c in ("full", "low", "m1", "m2", "m3")] == [1, 2, 3, 4, 5]


def test_the_mean_voltage_is_charge_weighted() -> None:
    # 12 h at 4.0 V and 300 kA, then 12 h at 4.4 V and 100 kA: ∫U·I / ∫I
    # = (4.0 × 3600 + 4.4 × 1200) / 4800 = 4.1 V, not the time mean 4.2 V
    mixed = CellSums(energy_kwh=4.0 * 3600 + 4.4 * 1200, charge_kah=4800.0, covered_s=DAY_S)
    got = excesses({"M": mixed, "N": day_of(4.1)}, DAY_S, CE)
    assert got["M"].voltage_avg_v == pytest.approx(4.1, abs=1e-9)


def test_ties_are_ranked_by_name_whatever_the_order_they_came_in() -> None:
    a = excesses({"B": day_of(4.2), "A": day_of(4.2), "C": day_of(4.3)}, DAY_S, CE)
    b = excesses({"C": day_of(4.3), "A": day_of(4.2), "B": day_of(4.2)}, DAY_S, CE)
    assert {c: e.rank for c, e in a.items()} == {c: e.rank for c, e in b.items()}
    assert a["C"].rank == 1


def test_no_covered_cell_no_median() -> None:
    assert excesses({"A": day_of(4.2, hours=6.0)}, DAY_S, CE) == {}
    assert median([3.0, 1.0, 2.0]) == 2.0
