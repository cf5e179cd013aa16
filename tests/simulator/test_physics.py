import math

import numpy as np

from tests.simulator.sims import DAY, T0, sim

# Defaults of SimParams, restated here so the expectations below are worked out by hand.
LINE_KA, DRIFT_KA, CURRENT_NOISE_KA = 300.0, 1.5, 0.3
CELL_V, OFFSET_V, BACK_EMF_V, SWING_V = 4.20, 0.10, 1.65, 0.015
STEP_V_MAX, DECAY_H, SLOW_MAX = 0.15, 1.5, 4.5
EXCESS_SHARE, EXCESS_V = 0.05, (0.08, 0.16)


def test_line_current_is_shared_and_stays_near_nominal() -> None:
    s = sim(cells=5)
    steps = list(s.telemetry(T0, T0 + DAY))
    for step in steps:
        assert len({p["line_current_ka"] for p in step.payloads}) == 1
    current = np.array([step.payloads[0]["line_current_ka"] for step in steps])
    # the drift sines add up to at most 1.5 kA; the noise is 0.3 kA, 6 sigma at most here
    assert np.all(np.abs(current - LINE_KA) <= DRIFT_KA + 6 * CURRENT_NOISE_KA)
    # 1440 samples: the noise of the mean is 0.3/sqrt(1440) = 0.008 kA
    assert abs(current.mean() - LINE_KA) <= DRIFT_KA + 4 * CURRENT_NOISE_KA / math.sqrt(1440)


def test_mean_cell_voltage_is_near_the_set_point() -> None:
    cells = 60
    cols = sim(cells=cells).columns(0, 1440)  # one day, one sample a minute
    voltage = np.where(cols.cell_voltage_v > 8.0, np.nan, cols.cell_voltage_v)
    # per-cell bound: offset 0.10 V, a persistent excess of at most 0.16 V, current drift
    # 2.65 V/300 kA × 1.5 kA = 0.013 V, swing 0.015 V, at most 3 anode changes' steps of
    # 0.15 V decaying with tau at most 1.5 × 4.5 h over 24 h: 3 × 0.15 × 6.75 / 24 = 0.127 V,
    # noise of a mean of 1440 samples ~ 0
    drift_v = (CELL_V + OFFSET_V + EXCESS_V[1] - BACK_EMF_V) / LINE_KA * DRIFT_KA
    changes_v = 3 * STEP_V_MAX * DECAY_H * SLOW_MAX / 24
    per_cell = np.nanmean(voltage, axis=0)
    bound = OFFSET_V + EXCESS_V[1] + drift_v + SWING_V + changes_v + 0.002
    assert np.all(np.abs(per_cell - CELL_V) <= bound)
    # the offsets are uniform in ±0.1 V: their mean over 60 cells has sigma
    # 0.1/sqrt(3)/sqrt(60) = 0.0075 V; at 5 % of 60 cells, more than 10 with an excess has
    # a probability below 1e-4: their share of the mean at most 10 × 0.16 / 60 = 0.027 V
    offsets_v = 4 * OFFSET_V / math.sqrt(3) / math.sqrt(cells)
    excess_v = 10 * EXCESS_V[1] / cells
    assert abs(per_cell.mean() - CELL_V) <= offsets_v + excess_v + drift_v + SWING_V + changes_v


def test_a_few_cells_run_above_anything_the_offsets_explain() -> None:
    cells = 400
    quiet = sim(cells=cells, change_step_v=(0.0, 0.0), ae_rate_per_cell_day=0.0)
    per_cell = quiet.columns(0, 1440).cell_voltage_v.mean(axis=0)
    # without an excess a cell's mean is within offset + drift + swing of 4.20 V
    drift_v = (CELL_V + OFFSET_V + EXCESS_V[1] - BACK_EMF_V) / LINE_KA * DRIFT_KA
    high = per_cell > CELL_V + OFFSET_V + drift_v + SWING_V + 0.002
    # 5 % of 400 cells carry e = 0.08–0.16 V more; one clears the bound when its offset
    # (uniform in ±0.1 V) is above 0.1 − e, 40–80 % of them: some, never more than the
    # excess cells (20 expected, 4 sigma above)
    assert 0 < high.sum() <= EXCESS_SHARE * cells + 4 * math.sqrt(cells * 0.05 * 0.95)
    assert per_cell.min() >= 3.9
    assert per_cell.max() <= 4.5


def test_voltage_follows_the_line_current_through_the_pseudo_resistance() -> None:
    quiet = sim(
        cells=2,
        cell_offset_v=0.0,
        excess_share=0.0,
        voltage_swing_v=0.0,
        change_step_v=(0.0, 0.0),
        ae_rate_per_cell_day=0.0,
        current_drift_ka=10.0,
    )
    cols = quiet.columns(0, 2000)
    # R = (4.20 - 1.65) V / 300 kA = 8.5 µΩ, so U = 1.65 + 0.0085 × I
    expected = BACK_EMF_V + (CELL_V - BACK_EMF_V) / LINE_KA * cols.line_current_ka
    # voltage noise 0.008 V per sample (5 sigma), rounding of U and I
    assert np.all(np.abs(cols.cell_voltage_v - expected[:, None]) <= 5 * 0.008 + 1e-4)
    assert cols.line_current_ka.max() - cols.line_current_ka.min() > 5.0


def test_bath_temperature_and_noise_are_in_their_usual_ranges() -> None:
    cols = sim(cells=20, ae_rate_per_cell_day=0.0).columns(0, 1440)
    # 955 °C ± offset 4 ± swing 2 ± chill 3 after a change ± noise
    assert cols.bath_temp_c.min() >= 955 - 4 - 2 - 3 - 2
    assert cols.bath_temp_c.max() <= 955 + 4 + 2 + 2
    # cell levels 6–12 µΩ, so most samples lie in 5–15 µΩ
    share = np.mean((cols.noise_uohm >= 5) & (cols.noise_uohm <= 15))
    assert share > 0.8


def test_anode_effects_exceed_8_v_and_last_1_to_5_minutes() -> None:
    interval_s, cells, days, rate = 5.0, 6, 2, 6.0
    cols = sim(cells=cells, interval_s=interval_s, ae_rate_per_cell_day=rate).columns(
        0, int(days * 86400 / interval_s)
    )
    durations, peaks = [], []
    for c in range(cells):
        voltage = cols.cell_voltage_v[:, c]
        high = voltage > 8.0
        starts = np.flatnonzero(high[1:] & ~high[:-1]) + 1
        ends = np.flatnonzero(~high[1:] & high[:-1]) + 1
        assert len(starts) == len(ends)  # the window begins and ends outside an effect
        durations += ((ends - starts) * interval_s).tolist()
        peaks += [voltage[a:b].max() for a, b in zip(starts, ends, strict=True)]
        assert np.all(voltage[~high] < 5.0)
    # 6 effects a cell-day over 12 cell-days: 72 expected, binomial sigma ~7.3
    assert 72 - 4 * 7.3 <= len(durations) <= 72 + 4 * 7.3
    # 60–300 s, measured on a 5 s grid
    assert min(durations) >= 60 - interval_s
    assert max(durations) <= 300 + interval_s
    # drawn in 20–50 V, then quenched down to 60 % of the peak
    assert min(peaks) >= 20 * (1 - 0.4 * interval_s / 60)
    assert max(peaks) <= 50


def test_default_anode_effect_rate_is_0_15_per_cell_day() -> None:
    cells, days = 100, 4
    cols = sim(cells=cells).columns(0, days * 1440)
    high = cols.cell_voltage_v > 8.0
    count = int(np.sum(high[1:] & ~high[:-1]))
    # 0.15 × 400 cell-days = 60, sigma ~ sqrt(60) = 7.7
    assert 60 - 4 * 7.7 <= count <= 60 + 4 * 7.7


def test_some_anode_changes_settle_hours_later_than_the_rest() -> None:
    cells, interval_s, days = 40, 60.0, 12
    quiet = sim(
        cells=cells,
        voltage_noise_v=0.0,
        voltage_swing_v=0.0,
        current_drift_ka=0.0,
        current_noise_ka=0.0,
        ae_rate_per_cell_day=0.0,
    )
    cols = quiet.columns(0, int(days * 86400 / interval_s))
    t_s = (cols.ts_ns - T0) / 1e9
    changes: dict[str, list[float]] = {}
    for e in quiet.events(T0, T0 + days * DAY):
        if e.payload["type"] == "anode_change":
            changes.setdefault(e.cell, []).append((e.ts_ns - T0) / 1e9)
    ratios = []
    for cell, times in changes.items():
        v = cols.cell_voltage_v[:, quiet.cell_ids.index(cell)]
        for t in times:
            # alone: no other change of the cell in the 20 h before or the 3 h after
            if not 20 * 3600 < t < (days - 1) * 86400 or any(
                -20 * 3600 < o - t < 3 * 3600 for o in times if o != t
            ):
                continue
            before = np.searchsorted(t_s, t) - 1
            step = v[before + 1] - v[before]
            ratios.append((v[before + 1 + 180] - v[before]) / step)
    r = np.array(ratios)
    # exp(-3 h / tau) after a step of 0.06 V at least: 0.135 at tau 1.5 h, 0.51 to 0.64 at
    # 3 to 4.5 times that. The tail of a change 20 h before is at most 0.15 × exp(-20/6.75)
    # = 7.8 mV and falls by a third of that in the 3 h: 2.8 mV, 0.05 of a 60 mV step
    fast = np.abs(r - 0.135) < 0.06
    slow = (r > 0.51 - 0.06) & (r < 0.64 + 0.06)
    assert len(r) > 150
    assert np.all(fast | slow)
    # 15 % of the changes, 30 % of the careless crew's (one of four shifts): 18.75 %
    share = 0.15 * (1 + 1 + 1 + 2) / 4
    sigma = math.sqrt(share * (1 - share) / len(r))
    assert abs(slow.mean() - share) <= 4 * sigma
