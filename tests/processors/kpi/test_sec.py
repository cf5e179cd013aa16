"""Hand-worked energy, production and kWh/t (domain.md): every expected value is arithmetic
written out here, not computed by the code under test."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time

import numpy as np
import pytest

from processors.kpi.energy import Goal
from processors.kpi.periods import Calendar
from processors.kpi.sec import SecProcessor, SecSettings
from processors.model import Batch, Event, SampleBatch

NS = 1_000_000_000
H = 3600 * NS
FARADAY = 0.33557e-3  # t per kA·h
CE = 0.925
GOAL = Goal(
    current_efficiency=CE,
    baseline_kwh_per_t=13450.0,
    savings_goal_kwh_per_t=100.0,
    tariff_cny_per_kwh=0.38,
)
SHIFTS = (time(0), time(8), time(16))


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


# Asia/Shanghai is UTC+8 all year: local midnight of 2024-03-01 is 2024-02-29T16:00Z.
DAY0 = utc(2024, 2, 29, 16)


def processor(zone: str = "Asia/Shanghai", **kw: float) -> SecProcessor:
    timing = {"max_gap_s": 60.0, "update_interval_s": 60.0, "complete_grace_s": 900.0, **kw}
    settings = SecSettings(
        calendar=Calendar(zone, SHIFTS), goals={"P1": GOAL}, ae_thresholds_v={"P1": 8.0}, **timing
    )
    return SecProcessor(settings)


def batch(cells: list[str], series: list[tuple[int, int, float, float]], events=()) -> Batch:
    """series: (cell index, ts_ns, voltage, current)."""
    arr = np.array([s[:2] for s in series], dtype=np.int64).reshape(-1, 2)
    vi = np.array([s[2:] for s in series], dtype=np.float64).reshape(-1, 2)
    sb = SampleBatch(
        [("P1", c) for c in cells], arr[:, 0], arr[:, 1], vi[:, 0], vi[:, 1], [None] * len(series)
    )
    return Batch(sb, list(events))


def run(proc: SecProcessor, *batches: Batch, flush: bool = False, state=None):
    points = []
    for b in batches:
        state, out = proc.apply(b, state)
        points += out
    if flush:
        state, out = proc.flush(state)
        points += out
    return state, points


def final(points, measurement: str, period: str, start: int, cell: str | None = None) -> dict:
    """The last write of a point: what InfluxDB keeps."""
    found = [
        p
        for p in points
        if p.measurement == measurement
        and p.time_ns == start
        and dict(p.tags)["period"] == period
        and (cell is None or dict(p.tags).get("cell") == cell)
    ]
    assert found, f"no {measurement} {period} point at {start}"
    return found[-1].fields


def constant(cell: int, t0: int, t1: int, step_s: int, v: float, i: float):
    return [(cell, t, v, i) for t in range(t0, t1 + 1, step_s * NS)]


def test_constant_cell_over_a_shift() -> None:
    # 4.2 V, 300 kA, one sample every 10 s from 00:00 to 08:00:10 local.
    _, points = run(
        processor(), batch(["C1"], constant(0, DAY0, DAY0 + 8 * H + 10 * NS, 10, 4.2, 300.0))
    )
    f = final(points, "sec_cell", "shift", DAY0)
    energy = 4.2 * 300.0 * 8  # kWh
    metal = FARADAY * 300.0 * 8 * CE  # t
    assert f["energy_kwh"] == pytest.approx(energy, rel=1e-12)
    assert f["hours_covered"] == pytest.approx(8.0)
    assert f["aluminium_t"] == pytest.approx(metal, rel=1e-12)
    sec = 4.2 / (FARADAY * CE)  # ≈ 13,532 kWh/t, domain.md's 2980 × U / CE
    assert f["sec_kwh_per_t"] == pytest.approx(sec, rel=1e-12)
    assert f["baseline_kwh_per_t"] == 13450.0
    assert f["target_kwh_per_t"] == 13350.0
    assert f["goal_kwh_per_t"] == 100.0
    assert f["savings_kwh_per_t"] == pytest.approx(13450.0 - sec)
    assert f["goal_pct"] == pytest.approx((13450.0 - sec) / 100.0 * 100.0)
    assert f["energy_saved_kwh"] == pytest.approx((13450.0 - sec) * metal)
    assert f["cost_saved_cny"] == pytest.approx((13450.0 - sec) * metal * 0.38)
    assert f["complete"] is True  # the cell's data passed 08:00
    nxt = final(points, "sec_cell", "shift", DAY0 + 8 * H)
    assert nxt["energy_kwh"] == pytest.approx(4.2 * 300.0 * 10 / 3600)
    assert nxt["complete"] is False


def test_current_step() -> None:
    # 4.0 V; 300 kA until 04:00, 310 kA from 04:00; samples every 10 s.
    series = [
        (0, t, 4.0, 300.0 if t < DAY0 + 4 * H else 310.0)
        for t in range(DAY0, DAY0 + 8 * H + 1, 10 * NS)
    ]
    _, points = run(processor(), batch(["C1"], series), flush=True)
    f = final(points, "sec_cell", "shift", DAY0)
    # trapezoids: 300 kA for 4 h − 10 s, the step interval at 305 kA, 310 kA for 4 h
    charge = 300.0 * (4 - 10 / 3600) + 305.0 * (10 / 3600) + 310.0 * 4
    assert f["energy_kwh"] == pytest.approx(4.0 * charge, rel=1e-12)
    assert f["aluminium_t"] == pytest.approx(FARADAY * charge * CE, rel=1e-12)
    assert f["sec_kwh_per_t"] == pytest.approx(4.0 / (FARADAY * CE), rel=1e-12)


def test_gap_lowers_energy_and_production_alike() -> None:
    # 4.2 V, 300 kA, but nothing from 02:00:00 to 03:00:00 (a 3600 s gap > max_gap_s 60).
    series = constant(0, DAY0, DAY0 + 2 * H, 10, 4.2, 300.0) + constant(
        0, DAY0 + 3 * H, DAY0 + 8 * H, 10, 4.2, 300.0
    )
    _, points = run(processor(), batch(["C1"], series), flush=True)
    f = final(points, "sec_cell", "shift", DAY0)
    assert f["hours_covered"] == pytest.approx(7.0)
    assert f["energy_kwh"] == pytest.approx(4.2 * 300.0 * 7)
    assert f["sec_kwh_per_t"] == pytest.approx(4.2 / (FARADAY * CE), rel=1e-12)


def test_gap_across_midnight() -> None:
    # day 1 from 00:00:00 to 23:59:50, day 2 from 00:10:00 to 01:00:00, every 10 s
    series = constant(0, DAY0, DAY0 + 24 * H - 10 * NS, 10, 4.1, 300.0) + constant(
        0, DAY0 + 24 * H + 600 * NS, DAY0 + 25 * H, 10, 4.1, 300.0
    )
    _, points = run(processor(), batch(["C1"], series), flush=True)
    day1 = final(points, "sec_cell", "day", DAY0)
    day2 = final(points, "sec_cell", "day", DAY0 + 24 * H)
    assert day1["hours_covered"] == pytest.approx(24 - 10 / 3600)
    assert day1["energy_kwh"] == pytest.approx(4.1 * 300.0 * (24 - 10 / 3600))
    assert day1["complete"] is True
    assert day2["hours_covered"] == pytest.approx(50 / 60)
    assert day2["energy_kwh"] == pytest.approx(4.1 * 300.0 * 50 / 60)
    assert day2["complete"] is False


def test_interval_across_a_boundary_is_split_by_interpolation() -> None:
    # samples at 07:59:50 (4.0 V, 300 kA) and 08:00:10 (4.0 V, 320 kA): the current at 08:00
    # interpolates to 310 kA, so shift 1 gets 10 s at (300+310)/2, shift 2 10 s at (310+320)/2.
    series = [(0, DAY0 + 8 * H - 10 * NS, 4.0, 300.0), (0, DAY0 + 8 * H + 10 * NS, 4.0, 320.0)]
    _, points = run(processor(), batch(["C1"], series), flush=True)
    first = final(points, "sec_cell", "shift", DAY0)
    second = final(points, "sec_cell", "shift", DAY0 + 8 * H)
    assert first["energy_kwh"] == pytest.approx(4.0 * 305.0 * 10 / 3600, rel=1e-12)
    assert second["energy_kwh"] == pytest.approx(4.0 * 315.0 * 10 / 3600, rel=1e-12)
    assert first["hours_covered"] == pytest.approx(10 / 3600)


def test_day_of_25_hours_at_the_end_of_summer_time() -> None:
    # Europe/Berlin, 2024-10-27: clocks go back at 03:00 CEST; local midnight to midnight is
    # 2024-10-26T22:00Z to 2024-10-27T23:00Z, 25 hours.
    start, end = utc(2024, 10, 26, 22), utc(2024, 10, 27, 23)
    series = constant(0, start, end + 60 * NS, 60, 4.2, 300.0)
    _, points = run(processor("Europe/Berlin"), batch(["C1"], series))
    day = final(points, "sec_cell", "day", start)
    assert day["hours_covered"] == pytest.approx(25.0)
    assert day["energy_kwh"] == pytest.approx(4.2 * 300.0 * 25)
    assert day["complete"] is True
    night_shift = final(points, "sec_cell", "shift", start)  # 00:00 to 08:00 CET = 9 hours
    assert night_shift["hours_covered"] == pytest.approx(9.0)


def test_an_empty_period_has_no_point() -> None:
    # data in shift 1 and shift 3, nothing in shift 2
    series = constant(0, DAY0, DAY0 + 60 * NS, 10, 4.2, 300.0) + constant(
        0, DAY0 + 16 * H, DAY0 + 16 * H + 60 * NS, 10, 4.2, 300.0
    )
    _, points = run(processor(), batch(["C1"], series), flush=True)
    shift_starts = {p.time_ns for p in points if dict(p.tags)["period"] == "shift"}
    assert shift_starts == {DAY0, DAY0 + 16 * H}


def test_potline_is_energy_weighted_not_a_mean_of_cell_ratios() -> None:
    # C1 at 4.0 V / 300 kA, C2 at 4.4 V / 300 kA, one hour each, samples every 10 s
    series = constant(0, DAY0, DAY0 + H, 10, 4.0, 300.0) + constant(
        1, DAY0, DAY0 + H, 10, 4.4, 300.0
    )
    _, points = run(processor(), batch(["C1", "C2"], series), flush=True)
    f = final(points, "sec_potline", "shift", DAY0)
    energy = 4.0 * 300 + 4.4 * 300
    metal = 2 * FARADAY * 300 * CE
    assert f["energy_kwh"] == pytest.approx(energy)
    assert f["aluminium_t"] == pytest.approx(metal)
    assert f["sec_kwh_per_t"] == pytest.approx(energy / metal)
    assert f["cells"] == 2
    assert f["hours_covered"] == pytest.approx(1.0)


def test_state_round_trip_equals_one_pass() -> None:
    # the same samples in one batch or in three (each state checkpointed as JSON) agree
    import orjson

    series = constant(0, DAY0, DAY0 + 9 * H, 10, 4.2, 300.0)
    proc = processor()
    _, one = run(proc, batch(["C1"], series), flush=True)
    state, many = None, []
    for part in (series[:1000], series[1000:2000], series[2000:]):
        state, out = proc.apply(batch(["C1"], part), state)
        state = orjson.loads(orjson.dumps(proc.checkpoint(state)))
        many += out
    state, out = proc.flush(state)
    many += out
    for period, start in (("shift", DAY0), ("shift", DAY0 + 8 * H), ("day", DAY0)):
        a = final(one, "sec_cell", period, start)
        b = final(many, "sec_cell", period, start)
        assert b["energy_kwh"] == pytest.approx(a["energy_kwh"], rel=1e-12)
        assert b["complete"] == a["complete"]


def test_a_silent_cell_does_not_hold_the_period_open() -> None:
    # C2 stops at 07:00; C1 runs to 08:20, past 08:00 + the 15 min grace
    series = constant(0, DAY0, DAY0 + 8 * H + 20 * 60 * NS, 10, 4.2, 300.0) + constant(
        1, DAY0, DAY0 + 7 * H, 10, 4.2, 300.0
    )
    _, points = run(processor(), batch(["C1", "C2"], series))
    assert final(points, "sec_potline", "shift", DAY0)["complete"] is True
    assert final(points, "sec_cell", "shift", DAY0, cell="C2")["complete"] is True


def test_measured_current_efficiency_from_taps() -> None:
    # 300 kA for 10 h: Faraday 0.33557 × 3000 = 1006.71 kg; 930 kg tapped → CE 92.38 %
    taps = [
        Event("P1", "C1", DAY0 + 5 * H, "metal_tap", {"metal_kg": 500.0}),
        Event("P1", "C1", DAY0 + 9 * H, "metal_tap", {"metal_kg": 430.0}),
    ]
    series = constant(0, DAY0, DAY0 + 10 * H, 10, 4.2, 300.0)
    _, points = run(processor(), batch(["C1"], series, taps), flush=True)
    month = final(points, "sec_cell", "month", utc(2024, 2, 29, 16))
    assert month["metal_t"] == pytest.approx(0.93)
    assert month["ce_measured_pct"] == pytest.approx(100 * 930 / (0.33557 * 3000))
    assert "ce_measured_pct" not in final(points, "sec_cell", "day", DAY0)


def test_open_periods_are_rewritten_at_least_every_update_interval() -> None:
    proc = processor(update_interval_s=60)
    series = constant(0, DAY0, DAY0 + 300 * NS, 10, 4.2, 300.0)
    state, points = None, []
    for k in range(0, len(series), 3):  # a batch every 30 s of event time
        state, out = proc.apply(batch(["C1"], series[k : k + 3]), state)
        points += out
    writes = [
        p.fields["hours_covered"]
        for p in points
        if p.measurement == "sec_cell" and dict(p.tags)["period"] == "shift"
    ]
    assert len(writes) >= 300 // 60
    assert writes == sorted(writes)


def test_rebase_continues_the_live_month_from_the_backfilled_totals() -> None:
    proc = processor()
    month = utc(2024, 2, 29, 16)  # local 2024-03-01 00:00
    # live: C1 at 4 V, 300 kA, every 30 s for two hours, with 01:00-01:30 missing
    whole = constant(0, DAY0, DAY0 + 2 * H, 30, 4.0, 300.0)
    gap = [s for s in whole if DAY0 + H <= s[1] < DAY0 + H + H // 2]
    live_rows = [s for s in whole if s not in gap]
    live_state, _ = run(proc, batch(["C1"], live_rows))
    live = proc.checkpoint(live_state)  # the rebase below updates live_state in place
    fresh, _ = run(proc, batch(["C1"], whole))  # what history holds after the backfill
    periods = [("P1", "month", month), ("P1", "day", DAY0), ("P1", "shift", DAY0)]
    rebased = proc.rebase(live, fresh, periods)
    # live goes on for another hour; its flush then covers three whole hours
    more = constant(0, DAY0 + 2 * H + 30 * NS, DAY0 + 3 * H, 30, 4.0, 300.0)
    _, points = run(proc, batch(["C1"], more), flush=True, state=rebased)
    fields = final(points, "sec_cell", "month", month, "C1")
    assert fields["energy_kwh"] == pytest.approx(4.0 * 300 * 3, rel=1e-12)
    assert fields["hours_covered"] == pytest.approx(3.0, rel=1e-12)
    # without the rebase the live month misses the gap from 00:59:30 to 01:30:00, 1,830 s
    _, points = run(proc, batch(["C1"], more), flush=True, state=live)
    missed_h = (1800 + 30) / 3600
    fields = final(points, "sec_cell", "month", month, "C1")
    assert fields["energy_kwh"] == pytest.approx(4.0 * 300 * (3 - missed_h), rel=1e-12)


def test_a_day_with_a_voltage_step_an_anode_effect_and_a_tap_explains_its_kwh_per_t() -> None:
    # C1 at 320 kA every 10 s for a local day: 4.30 V until 12:00, 4.25 V from 12:00; an
    # anode effect at 31.5 V from 06:00:00 to 06:01:50 (12 samples), 4.30 V again at 06:02.
    effect = range(DAY0 + 6 * H, DAY0 + 6 * H + 120 * NS, 10 * NS)
    series = [
        (0, t, 31.5 if t in effect else 4.30 if t < DAY0 + 12 * H else 4.25, 320.0)
        for t in range(DAY0, DAY0 + 24 * H + 1, 10 * NS)
    ]
    tap = Event("P1", "C1", DAY0 + 9 * H, "metal_tap", {"metal_kg": 2300.0})
    goal = replace(GOAL, baseline_kwh_per_t=13600.0, baseline_voltage_v=4.20)
    settings = SecSettings(
        calendar=Calendar("Asia/Shanghai", SHIFTS),
        goals={"P1": goal},
        ae_thresholds_v={"P1": 8.0},
        max_gap_s=60.0,
        update_interval_s=60.0,
        complete_grace_s=900.0,
    )
    _, points = run(SecProcessor(settings), batch(["C1"], series, [tap]), flush=True)
    f = final(points, "sec_cell", "day", DAY0)

    # by hand: charge 320 kA × 24 h; the effect's excursion, from the last 4.30 V sample
    # before it to the first after, is 120 s of (31.5 − 4.30) V at 320 kA by trapezoids
    charge = 320.0 * 24
    ae = (31.5 - 4.30) * 320.0 * 120 / 3600  # 290.133 kWh
    base = 320.0 * (4.30 * (43_200 - 10) + (4.30 + 4.25) / 2 * 10 + 4.25 * 43_200) / 3600
    energy = base + ae
    volts = energy / charge
    metal = FARADAY * charge * CE
    sec = volts / (FARADAY * CE)
    ce_b = 4.20 / (FARADAY * 13600.0)  # the current efficiency the baseline implies
    assert f["charge_kah"] == pytest.approx(charge, rel=5e-4)
    assert f["energy_kwh"] == pytest.approx(energy, rel=5e-4)
    assert f["ae_energy_kwh"] == pytest.approx(ae, rel=5e-4)
    assert f["voltage_avg_v"] == pytest.approx(volts, rel=5e-4)
    assert f["current_avg_ka"] == pytest.approx(320.0, rel=5e-4)
    assert f["ae_voltage_mv"] == pytest.approx(1000 * ae / charge, rel=5e-4)
    assert f["ae_kwh_per_t"] == pytest.approx(ae / metal, rel=5e-4)
    assert f["sec_kwh_per_t"] == pytest.approx(sec, rel=5e-4)
    assert f["savings_kwh_per_t"] == pytest.approx(13600.0 - sec, rel=5e-4)
    voltage_part = (4.20 - volts) / (FARADAY * ce_b)
    ce_part = volts * (1 / ce_b - 1 / CE) / FARADAY
    assert f["savings_voltage_kwh_per_t"] == pytest.approx(voltage_part, rel=5e-4)
    assert f["savings_ce_kwh_per_t"] == pytest.approx(ce_part, rel=5e-4)
    assert f["savings_voltage_kwh_per_t"] + f["savings_ce_kwh_per_t"] == pytest.approx(
        f["savings_kwh_per_t"], rel=1e-12
    )
    month = final(points, "sec_cell", "month", DAY0)
    assert month["ce_measured_pct"] == pytest.approx(100 * 2300 / (FARADAY * 1000 * charge))


def test_an_anode_effect_across_batches_keeps_its_base() -> None:
    # 4.2 V, then 30 V from 01:00:00 to 01:00:50 (6 samples), split after 01:00:20
    effect = range(DAY0 + H, DAY0 + H + 60 * NS, 10 * NS)
    series = [
        (0, t, 30.0 if t in effect else 4.2, 300.0) for t in range(DAY0, DAY0 + 2 * H + 1, 10 * NS)
    ]
    cut = next(k for k, s in enumerate(series) if s[1] == DAY0 + H + 30 * NS)
    _, points = run(
        processor(), batch(["C1"], series[:cut]), batch(["C1"], series[cut:]), flush=True
    )
    ae = (30.0 - 4.2) * 300.0 * 60 / 3600  # the excursion: 60 s of 25.8 V at 300 kA
    assert final(points, "sec_cell", "shift", DAY0)["ae_energy_kwh"] == pytest.approx(ae)


def test_a_complete_month_with_taps_can_be_on_its_measured_current_efficiency() -> None:
    # the last local day of February 2024, 4.2 V at 300 kA, and 2,100 kg tapped: charge
    # 7,200 kA·h, in theory 0.33557 × 7200 = 2,416.1 kg, so the measured CE is 86.92 %
    feb = utc(2024, 1, 31, 16)  # local 2024-02-01 00:00
    day = DAY0 - 24 * H  # local 2024-02-29
    series = constant(0, day, DAY0 + 10 * NS, 10, 4.2, 300.0)
    tap = Event("P1", "C1", day + 12 * H, "metal_tap", {"metal_kg": 2100.0})
    ce = 2100.0 / (0.33557 * 7200.0)
    for basis, expected_ce in (("configured", CE), ("measured", ce)):
        goal = replace(GOAL, measured_ce=basis == "measured")
        settings = SecSettings(
            calendar=Calendar("Asia/Shanghai", SHIFTS),
            goals={"P1": goal},
            ae_thresholds_v={"P1": 8.0},
            max_gap_s=60.0,
            update_interval_s=60.0,
            complete_grace_s=900.0,
        )
        _, points = run(SecProcessor(settings), batch(["C1"], series, [tap]))
        month = final(points, "sec_cell", "month", feb, "C1")
        assert month["complete"] is True
        assert month["ce_basis"] == basis
        assert month["ce_measured_pct"] == pytest.approx(100 * ce, rel=1e-9)
        assert month["ce_configured_pct"] == pytest.approx(100 * CE)
        assert month["sec_kwh_per_t"] == pytest.approx(4.2 / (FARADAY * expected_ce), rel=1e-9)
        potline = final(points, "sec_potline", "month", feb)
        assert potline["ce_basis"] == basis
        day_point = final(points, "sec_cell", "day", day, "C1")  # a day stays configured
        assert day_point["ce_basis"] == "configured"
        assert day_point["sec_kwh_per_t"] == pytest.approx(4.2 / (FARADAY * CE), rel=1e-9)
