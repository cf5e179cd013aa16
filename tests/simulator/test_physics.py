import math

import numpy as np

from tests.simulator.sims import DAY, T0, sim

# Defaults of SimParams, restated here so the expectations below are worked out by hand.
LINE_KA, DRIFT_KA, CURRENT_NOISE_KA = 300.0, 1.5, 0.3
CELL_V, OFFSET_V, BACK_EMF_V, SWING_V = 4.20, 0.10, 1.65, 0.015
STEP_V_MAX, DECAY_H = 0.06, 1.5


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
    # per-cell bound: offset 0.10 V, current drift 2.65 V/300 kA × 1.5 kA = 0.013 V,
    # swing 0.015 V, at most 3 anode changes' steps of 0.06 V decaying with tau 1.5 h
    # over 24 h: 3 × 0.06 × 1.5 / 24 = 0.011 V, noise of a mean of 1440 samples ~ 0
    drift_v = (CELL_V + OFFSET_V - BACK_EMF_V) / LINE_KA * DRIFT_KA
    changes_v = 3 * STEP_V_MAX * DECAY_H / 24
    per_cell = np.nanmean(voltage, axis=0)
    assert np.all(np.abs(per_cell - CELL_V) <= OFFSET_V + drift_v + SWING_V + changes_v + 0.002)
    # the offsets are uniform in ±0.1 V: their mean over 60 cells has sigma
    # 0.1/sqrt(3)/sqrt(60) = 0.0075 V
    offsets_v = 4 * OFFSET_V / math.sqrt(3) / math.sqrt(cells)
    assert abs(per_cell.mean() - CELL_V) <= offsets_v + drift_v + SWING_V + changes_v
    assert per_cell.min() >= 3.9
    assert per_cell.max() <= 4.5


def test_voltage_follows_the_line_current_through_the_pseudo_resistance() -> None:
    quiet = sim(
        cells=2,
        cell_offset_v=0.0,
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
