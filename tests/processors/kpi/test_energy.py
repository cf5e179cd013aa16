"""Hand-worked energy formulas (domain.md, contract section 2): every expected value is
arithmetic written out here, not computed by the code under test."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from processors.kpi.energy import (
    FARADAY_T_PER_KAH,
    Goal,
    aluminium_t,
    hours,
    interval_sums,
    kwh_per_tonne,
    measured_ce_pct,
    sec_fields,
    trapezoids,
)

NS = 1_000_000_000
H = 3600 * NS
GOAL = Goal(
    current_efficiency=0.925,
    baseline_kwh_per_t=13450.0,
    savings_goal_kwh_per_t=100.0,
    tariff_cny_per_kwh=0.38,
)


def test_faraday_constant_is_0_33557_kg_per_ka_h() -> None:
    # 26.9815 g/mol / (3 × 96485.33 C/mol) = 9.32145e-5 g/C; × 3.6e6 C per kA·h = 335.572 g
    t_per_kah = 26.9815 / (3 * 96485.33) * 3.6e6 / 1e6
    assert t_per_kah == pytest.approx(0.33557e-3, rel=1e-4)
    assert FARADAY_T_PER_KAH == 0.33557e-3


def test_production_of_a_300_ka_cell_day_at_ce_0_93() -> None:
    # domain.md: 0.33557 × 300 × 24 × 0.93 = 100.671 × 24 × 0.93 = 2416.104 × 0.93
    #          = 2246.97672 kg ≈ 2,247 kg per day
    assert aluminium_t(300.0 * 24, 0.93) == pytest.approx(2.24697672, rel=1e-9)


def test_production_is_zero_without_charge() -> None:
    assert aluminium_t(0.0, 0.925) == 0.0


def test_kwh_per_tonne_at_4_2_v_and_ce_0_925() -> None:
    # 4.2 V × 300 kA for 10 h = 12600 kWh; 3000 kA·h × 0.33557e-3 × 0.925 = 0.93120675 t
    # 12600 / 0.93120675 = 13530.83 kWh/t (domain.md: 2980 × 4.2 / 0.925 ≈ 13531)
    assert kwh_per_tonne(12600.0, 0.93120675) == pytest.approx(13530.83, abs=0.01)


def test_kwh_per_tonne_of_the_worked_day_at_4_27_v_and_ce_0_93() -> None:
    # domain.md "Why did kWh/t move?": U = 4.270 V, CE = 0.930 → SEC = 13,682.4
    # a 300 kA day: 4.27 × 7200 = 30744 kWh over 2.24697672 t (the production above)
    # 30744 / 2.24697672 = 13682.38
    assert kwh_per_tonne(30744.0, 2.24697672) == pytest.approx(13682.38, abs=0.01)


def test_one_millivolt_is_worth_about_3_2_kwh_per_t() -> None:
    # 0.001 V / (0.33557e-3 × 0.925) = 0.001 / 3.1040225e-4 = 3.2216 kWh/t
    metal = 0.93120675  # t, from 3000 kA·h at CE 0.925
    low = kwh_per_tonne(4.200 * 3000, metal)
    high = kwh_per_tonne(4.201 * 3000, metal)
    assert low is not None
    assert high is not None
    assert high - low == pytest.approx(3.2216, abs=1e-4)


def test_kwh_per_tonne_is_none_when_nothing_was_produced() -> None:
    assert kwh_per_tonne(1200.0, 0.0) is None
    assert kwh_per_tonne(0.0, 0.0) is None


def test_trapezoids_are_the_mean_of_the_ends_times_the_hours() -> None:
    # [0, 10 s] at 1200 kW both ends: 1200 × 10 / 3600 = 3.3333 kWh
    # [0, 1 h] from 100 to 300: (100 + 300) / 2 × 1 = 200
    # [1 h, 1.5 h] from 310 to 320: 315 × 0.5 = 157.5
    h = hours(
        np.array([0, 0, H], dtype=np.int64), np.array([10 * NS, H, H + H // 2], dtype=np.int64)
    )
    assert h.tolist() == pytest.approx([10 / 3600, 1.0, 0.5], rel=1e-15)
    out = trapezoids(
        h,
        np.array([1200.0, 100.0, 310.0]),
        np.array([1200.0, 300.0, 320.0]),
    )
    assert out.tolist() == pytest.approx([12000 / 3600, 200.0, 157.5], rel=1e-12)


def test_an_intervals_sums_and_no_extra_without_thresholds() -> None:
    # [0, 1 h]: U·I 1000 → 3000 kW: 2000 kWh; I 300 → 310 kA: 305 kA·h; 3600 s;
    # the effect's extra 0 → 100 kW: 50 kWh, or 0 when there are no thresholds
    t0, t1 = np.array([0], dtype=np.int64), np.array([H], dtype=np.int64)
    power = (np.array([1000.0]), np.array([3000.0]))
    current = (np.array([300.0]), np.array([310.0]))
    extra = (np.array([0.0]), np.array([100.0]))
    sums = interval_sums(t0, t1, power, current, extra, effects=True)
    assert [s.tolist() for s in sums] == [[2000.0], [305.0], [3600.0], [50.0]]
    without = interval_sums(t0, t1, power, current, extra, effects=False)
    assert without[3].tolist() == [0.0]


def test_fields_of_a_cell_using_more_than_the_baseline() -> None:
    # 4.2 V, 300 kA, 10 h: 12600 kWh, 3000 kA·h, 36000 s covered
    f = sec_fields(12600.0, 3000.0, 36000.0, GOAL)
    assert f["energy_kwh"] == 12600.0
    assert f["hours_covered"] == pytest.approx(10.0)
    assert f["aluminium_t"] == pytest.approx(0.93120675, rel=1e-12)  # 1.00671 t × 0.925
    assert f["sec_kwh_per_t"] == pytest.approx(13530.83, abs=0.01)
    assert f["baseline_kwh_per_t"] == 13450.0
    assert f["target_kwh_per_t"] == 13350.0  # 13450 − 100
    assert f["goal_kwh_per_t"] == 100.0
    # savings 13450 − 13530.83 = −80.83: worse than the baseline, reported as negative
    assert f["savings_kwh_per_t"] == pytest.approx(-80.83, abs=0.01)
    assert f["goal_pct"] == pytest.approx(-80.83, abs=0.01)  # 100 × −80.83 / 100
    # −80.83 × 0.93120675 = −75.27 kWh; × 0.38 = −28.60 CNY
    assert f["energy_saved_kwh"] == pytest.approx(-75.27, abs=0.01)
    assert f["cost_saved_cny"] == pytest.approx(-28.60, abs=0.01)


def test_fields_of_a_cell_beating_the_goal() -> None:
    # 4.1 V, 300 kA, 10 h: 12300 kWh over the same 0.93120675 t
    # sec = 12300 / 0.93120675 = 13208.667; savings = 13450 − 13208.667 = 241.333
    f = sec_fields(12300.0, 3000.0, 36000.0, GOAL)
    assert f["sec_kwh_per_t"] == pytest.approx(13208.667, abs=1e-3)
    assert f["savings_kwh_per_t"] == pytest.approx(241.333, abs=1e-3)
    assert f["goal_pct"] == pytest.approx(241.333, abs=1e-3)  # 100 × 241.333 / 100
    # 241.333 × 0.93120675 = 224.731 kWh; × 0.38 CNY/kWh = 85.398 CNY
    assert f["energy_saved_kwh"] == pytest.approx(224.731, abs=1e-3)
    assert f["cost_saved_cny"] == pytest.approx(85.398, abs=1e-3)


def test_goal_pct_is_relative_to_the_configured_goal() -> None:
    # the same 241.333 kWh/t of savings against a goal of 200: 100 × 241.333 / 200 = 120.67 %
    goal = Goal(0.925, 13450.0, 200.0, 0.38)
    f = sec_fields(12300.0, 3000.0, 36000.0, goal)
    assert f["target_kwh_per_t"] == 13250.0  # 13450 − 200
    assert f["goal_pct"] == pytest.approx(120.667, abs=1e-3)


def test_no_production_leaves_out_the_ratio_and_what_derives_from_it() -> None:
    f = sec_fields(0.0, 0.0, 0.0, GOAL)
    assert f == {
        "energy_kwh": 0.0,
        "hours_covered": 0.0,
        "aluminium_t": 0.0,
        "baseline_kwh_per_t": 13450.0,
        "target_kwh_per_t": 13350.0,
        "goal_kwh_per_t": 100.0,
        "charge_kah": 0.0,
        "ae_energy_kwh": 0.0,
        "ce_configured_pct": 92.5,
    }


def test_measured_current_efficiency_from_tapped_metal() -> None:
    # 3000 kA·h → 0.33557 × 3000 = 1006.71 kg in theory; 930 kg tapped → 92.380 %
    assert measured_ce_pct(930.0, 3000.0) == pytest.approx(92.3801, abs=1e-4)


def test_measured_current_efficiency_is_none_without_charge() -> None:
    assert measured_ce_pct(930.0, 0.0) is None


def test_the_domain_worked_example_splits_the_savings() -> None:
    # domain.md: U_b = 4.300 V, SEC_b = 13,820 kWh/t → CE_b = 4.3 / (0.33557e-3 × 13820)
    # = 0.92721; a day at U = 4.270 V and CE = 0.930: SEC = 4.27 / (0.33557e-3 × 0.93)
    # = 13,682.4, savings 137.6 = 96.4 from the voltage and 41.2 from the CE.
    goal = Goal(
        current_efficiency=0.930,
        baseline_kwh_per_t=13820.0,
        savings_goal_kwh_per_t=100.0,
        tariff_cny_per_kwh=0.38,
        baseline_voltage_v=4.300,
    )
    charge = 7716.0  # a 321.5 kA cell-day, kA·h
    f = sec_fields(4.270 * charge, charge, 86_400.0, goal)
    assert f["voltage_avg_v"] == pytest.approx(4.270, rel=1e-12)
    assert f["current_avg_ka"] == pytest.approx(321.5, rel=1e-12)
    assert f["sec_kwh_per_t"] == pytest.approx(13682.4, abs=0.05)
    assert f["savings_kwh_per_t"] == pytest.approx(137.6, abs=0.05)
    assert f["savings_voltage_kwh_per_t"] == pytest.approx(96.4, abs=0.05)
    assert f["savings_ce_kwh_per_t"] == pytest.approx(41.2, abs=0.05)
    parts = f["savings_voltage_kwh_per_t"] + f["savings_ce_kwh_per_t"]
    assert parts == pytest.approx(f["savings_kwh_per_t"], rel=1e-15)


def test_the_anode_effects_share_of_voltage_and_kwh_per_t() -> None:
    # domain.md: 291.4 kWh of anode effects on a cell-day of about 7,674 kA·h is about
    # 38 mV, and about 122 kWh/t of that day (at CE 0.925: 7674 × 0.33557e-3 × 0.925 t)
    f = sec_fields(4.31 * 7674.0, 7674.0, 86_400.0, GOAL, ae_energy_kwh=291.4)
    assert f["ae_energy_kwh"] == 291.4
    assert f["ae_voltage_mv"] == pytest.approx(1000 * 291.4 / 7674.0, rel=1e-12)
    assert round(f["ae_voltage_mv"]) == 38
    metal = 7674.0 * 0.33557e-3 * 0.925
    assert f["ae_kwh_per_t"] == pytest.approx(291.4 / metal, rel=1e-12)
    assert round(f["ae_kwh_per_t"]) == 122
    assert "savings_voltage_kwh_per_t" not in f  # no baseline_voltage_v: no split


def test_ac_figures_through_the_rectifier_efficiency() -> None:
    # 4.2 V at 300 kA for a day, rectifiers 97 % efficient: AC = DC / 0.97
    goal = replace(GOAL, rectifier_efficiency=0.97)
    f = sec_fields(4.2 * 300 * 24, 300.0 * 24, 86_400.0, goal)
    assert f["energy_ac_kwh"] == pytest.approx(4.2 * 300 * 24 / 0.97, rel=1e-12)
    assert f["sec_ac_kwh_per_t"] == pytest.approx(4.2 / (0.33557e-3 * 0.925) / 0.97, rel=1e-12)
    assert "energy_ac_kwh" not in sec_fields(1.0, 1.0, 1.0, GOAL)
