import math
from collections import Counter, defaultdict
from itertools import pairwise

import pytest

from simulator.schedules import anode_sequence
from tests.simulator.sims import DAY, HOUR, T0, sim

# Defaults of SimParams, restated here so the expectations below are worked out by hand.
LINE_KA, DRIFT_KA = 300.0, 1.5
KG_PER_KA_H, CE, TAP_ERROR, TAP_JITTER_H = 0.33557, 0.93, 0.03, 1.0


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
    assert len(per_cell) == cells
    assert all(50 <= n <= 54 for n in per_cell.values())
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
