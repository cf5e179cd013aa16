import math
import re
from collections import Counter, defaultdict
from itertools import pairwise

import numpy as np
import orjson
import pytest

from simulator.potline import PotlineSim, SimParams, anode_sequence

T0 = 1_230_768_000_000_000_000  # 2009-01-01T00:00:00Z in ns
S = 1_000_000_000
HOUR = 3600 * S
DAY = 86400 * S
TELEMETRY_KEYS = {"ts", "cell_voltage_v", "line_current_ka", "bath_temp_c", "noise_uohm"}
CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Defaults of SimParams, restated here so the expectations below are worked out by hand.
LINE_KA, DRIFT_KA, CURRENT_NOISE_KA = 300.0, 1.5, 0.3
CELL_V, OFFSET_V, BACK_EMF_V, SWING_V = 4.20, 0.10, 1.65, 0.015
STEP_V_MAX, DECAY_H = 0.06, 1.5
KG_PER_KA_H, CE, TAP_ERROR, TAP_JITTER_H = 0.33557, 0.93, 0.03, 1.0


def sim(cells: int = 4, seed: int = 1, interval_s: float = 60.0, **params) -> PotlineSim:
    return PotlineSim(
        "P1", cells, seed=seed, start_ns=T0, interval_s=interval_s, params=SimParams(**params)
    )


def all_payloads(s: PotlineSim, t1_ns: int) -> list[dict]:
    return [p for step in s.telemetry(T0, t1_ns) for p in step.payloads]


# ---- determinism -----------------------------------------------------------------------


def test_same_seed_gives_the_same_telemetry_and_events() -> None:
    a, b = sim(seed=7), sim(seed=7)
    assert all_payloads(a, T0 + HOUR) == all_payloads(b, T0 + HOUR)
    assert a.events(T0 - 10 * DAY, T0) == b.events(T0 - 10 * DAY, T0)


def test_another_seed_gives_other_telemetry_and_events() -> None:
    a, b = sim(seed=7), sim(seed=8)
    assert all_payloads(a, T0 + HOUR) != all_payloads(b, T0 + HOUR)
    assert a.events(T0 - 10 * DAY, T0) != b.events(T0 - 10 * DAY, T0)


def test_another_potline_with_the_same_seed_is_not_a_clone() -> None:
    p1 = PotlineSim("P1", 3, seed=7, start_ns=T0)
    p2 = PotlineSim("P2", 3, seed=7, start_ns=T0)
    assert all_payloads(p1, T0 + 10 * S) != all_payloads(p2, T0 + 10 * S)


def test_any_window_equals_the_same_part_of_a_longer_one() -> None:
    s = sim(cells=3, interval_s=7.0)
    whole = s.columns(-300, 3000)
    head, tail = s.columns(-300, 1111), s.columns(811, 1889)
    for name in ("ts_ns", "line_current_ka", "cell_voltage_v", "bath_temp_c", "noise_uohm"):
        joined = np.concatenate([getattr(head, name), getattr(tail, name)])
        assert np.array_equal(getattr(whole, name), joined), name
    cut = T0 - 13 * DAY - 5
    assert s.events(T0 - 40 * DAY, T0) == s.events(T0 - 40 * DAY, cut) + s.events(cut, T0)


def test_more_cells_leave_the_first_cells_unchanged() -> None:
    few, many = sim(cells=2), sim(cells=5)
    for a, b in zip(few.telemetry(T0, T0 + HOUR), many.telemetry(T0, T0 + HOUR), strict=True):
        assert a.payloads == b.payloads[:2]
    assert few.events(T0, T0 + 20 * DAY) == [
        e for e in many.events(T0, T0 + 20 * DAY) if e.cell in few.cell_ids
    ]


# ---- contract shape --------------------------------------------------------------------


def test_telemetry_objects_have_the_contract_form() -> None:
    s = sim(cells=5, interval_s=1.0)
    steps = list(s.telemetry(T0, T0 + 120 * S))
    assert [step.ts_ns for step in steps] == [T0 + k * S for k in range(120)]
    assert s.cell_ids == ("C001", "C002", "C003", "C004", "C005")
    assert all(CELL_ID.fullmatch(cell) for cell in s.cell_ids)
    for step in steps:
        assert len(step.payloads) == 5
        for payload in step.payloads:
            assert set(payload) == TELEMETRY_KEYS
            assert type(payload["ts"]) is int and payload["ts"] * 1_000_000 == step.ts_ns
            for key in TELEMETRY_KEYS - {"ts"}:
                assert type(payload[key]) is float and math.isfinite(payload[key])


def test_events_have_the_contract_form() -> None:
    events = sim(cells=10).events(T0, T0 + 5 * DAY)
    kinds = {e.payload["type"] for e in events}
    assert kinds == {"anode_change", "metal_tap"}
    for e in events:
        p = e.payload
        assert type(p["ts"]) is int and p["ts"] * 1_000_000 == e.ts_ns
        if p["type"] == "anode_change":
            assert set(p) == {"ts", "type", "anode", "block", "butt_mm"}
            assert type(p["anode"]) is int and 1 <= p["anode"] <= 40
            assert p["block"] in {"590", "560"}
            assert type(p["butt_mm"]) is int
        else:
            assert set(p) == {"ts", "type", "metal_kg"}
            assert type(p["metal_kg"]) is float and p["metal_kg"] > 0


def test_events_are_in_time_order_and_within_the_window() -> None:
    t1 = T0 + 20 * DAY
    times = [e.ts_ns for e in sim(cells=20).events(T0, t1)]
    assert times == sorted(times)
    assert times[0] >= T0 and times[-1] < t1


def test_stream_interleaves_telemetry_and_events_in_time_order() -> None:
    s = sim(cells=8, interval_s=30.0)
    t1 = T0 + 3 * DAY
    records = list(s.stream(T0, t1))
    times = [r.ts_ns for r in records]
    assert times == sorted(times)
    events = [r for r in records if r.kind == "event"]
    assert [(r.ts_ns, r.cell, r.payload) for r in events] == [tuple(e) for e in s.events(T0, t1)]
    telemetry = [r.payload for r in records if r.kind == "telemetry"]
    assert telemetry == all_payloads(s, t1)
    assert len(events) > 0


# ---- fast columnar path ----------------------------------------------------------------


def test_columns_hold_the_same_values_as_the_payloads() -> None:
    s = sim(cells=3, interval_s=1.0)
    cols = s.columns(0, 50)
    payloads = all_payloads(s, T0 + 50 * S)
    assert cols.cell_voltage_v.shape == (50, 3) and cols.line_current_ka.shape == (50,)
    assert [p["cell_voltage_v"] for p in payloads] == cols.cell_voltage_v.ravel().tolist()
    assert [p["line_current_ka"] for p in payloads[::3]] == cols.line_current_ka.tolist()


def test_an_empty_window_has_no_samples() -> None:
    s = sim()
    assert list(s.telemetry(T0 + 1, T0 + 60 * S)) == [] and len(s.columns(5, 0)) == 0
    assert list(s.stream(T0, T0)) == []


def test_encoded_payloads_decode_to_the_payload_objects() -> None:
    s = sim(cells=3, interval_s=1.0)
    cols = s.columns(0, 7)
    rows = cols.payloads()
    singles = cols.encode()
    assert [(c, orjson.loads(raw)) for c, raw in singles] == [
        (c, rows[k][c]) for k in range(7) for c in range(3)
    ]
    arrays = cols.encode(array_size=3)
    # 7 steps in arrays of 3: two full arrays and one of 1 per cell, each cell in turn
    assert [(c, len(orjson.loads(raw))) for c, raw in arrays] == [
        (c, n) for n in (3, 3, 1) for c in range(3)
    ]
    assert orjson.loads(arrays[1][1]) == [rows[0][1], rows[1][1], rows[2][1]]


# ---- physics ---------------------------------------------------------------------------


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
    assert per_cell.min() >= 3.9 and per_cell.max() <= 4.5


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
    assert min(durations) >= 60 - interval_s and max(durations) <= 300 + interval_s
    # drawn in 20–50 V, then quenched down to 60 % of the peak
    assert min(peaks) >= 20 * (1 - 0.4 * interval_s / 60) and max(peaks) <= 50


def test_default_anode_effect_rate_is_0_15_per_cell_day() -> None:
    cells, days = 100, 4
    cols = sim(cells=cells).columns(0, days * 1440)
    high = cols.cell_voltage_v > 8.0
    count = int(np.sum(high[1:] & ~high[:-1]))
    # 0.15 × 400 cell-days = 60, sigma ~ sqrt(60) = 7.7
    assert 60 - 4 * 7.7 <= count <= 60 + 4 * 7.7


def test_anode_sequence_visits_every_position_and_never_neighbours_in_a_row() -> None:
    sequence = anode_sequence(40)
    assert sequence[:5] == [1, 14, 27, 40, 13]  # stride 13, the first coprime >= 40 // 3
    assert sorted(sequence) == list(range(1, 41))
    assert all(abs(a - b) != 1 for a, b in pairwise(sequence))
    assert anode_sequence(1) == [1]


def anode_changes(events) -> dict[tuple[str, int], list[int]]:
    times = defaultdict(list)
    for e in events:
        if e.payload["type"] == "anode_change":
            times[e.cell, e.payload["anode"]].append(e.ts_ns)
    return times


@pytest.mark.parametrize(("cycle_days", "jitter_days"), [(31.0, 1.0), (28.0, 3.0)])
def test_each_anode_recurs_at_the_cycle_within_the_jitter(cycle_days, jitter_days) -> None:
    s = sim(cells=3, cycle_days=cycle_days, cycle_jitter_days=jitter_days)
    times = anode_changes(s.events(T0, T0 + 100 * DAY))
    assert {anode for _, anode in times} == set(range(1, 41))
    cycles = [(b - a) / DAY for ts in times.values() for a, b in pairwise(ts)]
    assert len(cycles) >= 3 * 40 * 2
    ms = 1e-3 / 86400
    assert all(cycle_days - jitter_days - ms <= c <= cycle_days + jitter_days + ms for c in cycles)


def test_forty_days_of_anode_history_without_telemetry() -> None:
    cells = 240
    events = sim(cells=cells).events(T0 - 40 * DAY, T0)
    changes = [e for e in events if e.payload["type"] == "anode_change"]
    per_cell = Counter(e.cell for e in changes)
    # 40 anodes every 31 days: one change per 0.775 days, 40 / 0.775 = 51.6 in 40 days,
    # give or take one at each end of the window
    assert len(per_cell) == cells and all(50 <= n <= 54 for n in per_cell.values())
    share_560 = sum(e.payload["block"] == "560" for e in changes) / len(changes)
    sigma = math.sqrt(0.05 * 0.95 / len(changes))
    assert abs(share_560 - 0.05) <= 4 * sigma


def test_late_changes_leave_thinner_butts() -> None:
    s = sim(cells=20, cycle_jitter_days=4.0, butt_noise_mm=0.0)
    events = s.events(T0, T0 + 70 * DAY)
    butts = {(e.cell, e.ts_ns): e.payload["butt_mm"] for e in events if "butt_mm" in e.payload}
    for (cell, _), ts in anode_changes(events).items():
        for a, b in pairwise(ts):
            # 155 mm at 31 days, 14 mm less per day late
            expected = 155 + 14 * (31 - (b - a) / DAY)
            assert abs(butts[cell, b] - expected) <= 0.5 + 1e-6


def test_metal_tap_is_the_faraday_production_since_the_last_tap() -> None:
    taps = defaultdict(list)
    for e in sim(cells=6).events(T0, T0 + 10 * DAY):
        if e.payload["type"] == "metal_tap":
            taps[e.cell].append((e.ts_ns, e.payload["metal_kg"]))
    checked = 0
    for series in taps.values():
        for (t_prev, _), (t, kg) in pairwise(series):
            hours = (t - t_prev) / HOUR
            # tapped every 24–32 h, each tap within ±1 h of its schedule
            assert 24 - 2 * TAP_JITTER_H <= hours <= 32 + 2 * TAP_JITTER_H
            # 0.33557 kg/(kA·h) × I × h × CE, I within 300 ± 1.5 kA, ± 3 % tap error;
            # e.g. 24 h at 300 kA: 0.33557 × 300 × 24 × 0.93 = 2246.9 kg
            low = KG_PER_KA_H * (LINE_KA - DRIFT_KA) * hours * CE * (1 - TAP_ERROR)
            high = KG_PER_KA_H * (LINE_KA + DRIFT_KA) * hours * CE * (1 + TAP_ERROR)
            assert low - 0.05 <= kg <= high + 0.05
            checked += 1
    assert checked >= 6 * 6


def test_metal_taps_average_the_faraday_production() -> None:
    total_kg, total_h = 0.0, 0.0
    taps = defaultdict(list)
    for e in sim(cells=30).events(T0, T0 + 30 * DAY):
        if e.payload["type"] == "metal_tap":
            taps[e.cell].append((e.ts_ns, e.payload["metal_kg"]))
    for series in taps.values():
        total_kg += sum(kg for _, kg in series[1:])
        total_h += (series[-1][0] - series[0][0]) / HOUR
    # the ±3 % errors average out over ~700 taps: 2247 kg a day at 300 kA and CE 0.93
    per_day = total_kg / total_h * 24
    assert abs(per_day - 2246.9) <= 2246.9 * (DRIFT_KA / LINE_KA + 0.005)


# ---- parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"anodes_per_cell": 0},
        {"cycle_jitter_days": 31.0},
        {"ae_rate_per_cell_day": 25.0},
        {"ae_duration_s": (60.0, 4000.0)},
        {"tap_jitter_h": 12.0},
        {"other_block_share": 1.5},
    ],
)
def test_impossible_parameters_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        SimParams(**bad)


def test_interval_must_be_whole_milliseconds() -> None:
    with pytest.raises(ValueError):
        PotlineSim("P1", 2, start_ns=T0, interval_s=0.0005)
