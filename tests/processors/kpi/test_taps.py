"""Current efficiency over tap cycles (contract 6.4): charges and CE worked out by hand.

The Faraday figure is 0.33557 kg per kA·h (docs/kpis.md). Samples every 30 s, so no
interval is a gap (max_gap_s 60) unless the test leaves samples out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time

import orjson
import pytest

from processors.kpi.periods import Calendar
from processors.kpi.taps import TapCycleProcessor, TapSettings, month_ce_pct
from processors.model import Batch, Event, Point
from processors.testing import at_rate, check_compliance, metal_tap, samples

NS = 1_000_000_000
CALENDAR = Calendar("Asia/Shanghai", (time(0), time(8), time(16)))
H = 3600 * NS
T0 = 1_709_251_200 * NS  # 2024-03-01T00:00Z, a minute boundary
CELL = ("P1", "C1")
F = 0.33557
STEP_S = 30
SETTINGS = TapSettings(max_cycle_h={"P1": 72.0}, max_gap_s=60.0, calendar=CALENDAR)

# taps at 1 h 25 s, 33 h 25 s and 57 h 25 s: mid-minute, so the tap's minute is shared
TAPS = [T0 + H + 25 * NS, T0 + 33 * H + 25 * NS, T0 + 57 * H + 25 * NS]
METAL = [1000.0, 3180.0, 2400.0]
STEP_AT = T0 + 45 * H  # the current goes from 300 to 320 kA at this sample
# 1 → 33 h: 32 h at 300 kA. 33 h 25 s → 57 h 25 s: 12 h less 25 s at 300, 12 h and 25 s at
# 320, and the one interval that ramps from 300 to 320 over the 30 s before 45 h carries
# (320 − 300) / 2 × 30 s more than 300 kA would.
CHARGE = [300.0 * 32, 300.0 * 12 + 320.0 * 12 + (20.0 * 25 + 10.0 * STEP_S) / 3600]
CE = [METAL[1] / (F * CHARGE[0]), METAL[2] / (F * CHARGE[1])]


def current(_c: int, t: int) -> float:
    return 320.0 if t >= STEP_AT else 300.0


def telemetry(t0: int, t1: int, sent: Callable[[int, int], bool] = lambda c, t: True) -> Batch:
    return Batch(samples([CELL], at_rate(t0, t1, STEP_S), current=current, sent=sent), [])


def taps(*k: int) -> list[Event]:
    return [metal_tap(CELL, TAPS[i], METAL[i]) for i in k]


def run(batches: list[Batch], proc: TapCycleProcessor | None = None) -> list[Point]:
    proc = proc or TapCycleProcessor(SETTINGS)
    state, points = None, []
    for batch in batches:
        state, produced = proc.apply(batch, state)
        points += produced
    return points


def hourly(t0: int, t1: int) -> list[Batch]:
    return [telemetry(t, min(t + H, t1)) for t in range(t0, t1, H)]


def check_cycles(points: list[Point]) -> None:
    assert [p.measurement for p in points] == ["tap_cycle", "tap_cycle"]
    assert [p.time_ns for p in points] == TAPS[1:]
    for p, q, ce, kg, hours in zip(points, CHARGE, CE, METAL[1:], [32.0, 24.0], strict=True):
        assert p.tags == (("potline", "P1"), ("cell", "C1"))
        assert p.fields["metal_kg"] == kg
        assert p.fields["charge_kah"] == pytest.approx(q, rel=1e-9)
        assert p.fields["hours"] == pytest.approx(hours, rel=1e-12)
        assert p.fields["hours_covered"] == pytest.approx(hours, rel=1e-9)
        assert p.fields["ce"] == pytest.approx(ce, rel=1e-6)


def test_three_taps_logged_before_their_samples_give_two_cycles() -> None:
    batches = hourly(T0, T0 + 60 * H)
    batches[0].events.extend(taps(0, 1, 2))  # all three known before any sample reaches them
    check_cycles(run(batches))


def test_three_taps_logged_after_the_samples_that_pass_them() -> None:
    batches = hourly(T0, T0 + 60 * H)
    batches[2].events.extend(taps(0))  # logged an hour after its instant
    batches[40].events.extend(taps(1))  # seven hours after
    batches[59].events.extend(taps(2))  # two hours after
    check_cycles(run(batches))


def test_a_tap_alone_then_the_samples_before_it() -> None:
    """Telemetry and events share no order: each tap comes first, then the samples it ends."""
    batches = hourly(T0, T0 + 60 * H)
    for k, hour in ((0, 1), (1, 33), (2, 57)):  # the batch that holds the tap's instant
        batches.insert(hour + k, Batch(telemetry(T0, T0).samples, taps(k)))
    check_cycles(run(batches))


def test_the_worked_example_of_kpis_md() -> None:
    """300 kA for 32 h, 3,180 kg: 9,600 kA·h, CE 3180 / (0.33557 × 9600) = 98.71 %."""
    t1 = T0 + 32 * H
    batch = Batch(
        samples([CELL], at_rate(T0, t1 + 60 * NS, STEP_S)),
        [metal_tap(CELL, T0, 900.0), metal_tap(CELL, t1, 3180.0)],
    )
    (point,) = run([batch])
    assert point.fields["charge_kah"] == pytest.approx(9600.0, rel=1e-9)
    assert point.fields["ce"] == pytest.approx(0.98713, abs=5e-6)


@pytest.mark.parametrize("at", [0, 1, 500, 3840, 5000, 7000])
def test_the_cycles_keep_the_batch_contract(at: int) -> None:
    """Shuffled cuts: taps and samples of one batch cut anywhere, by time."""
    batch = telemetry(T0, T0 + 60 * H)
    batch.events.extend(taps(0, 1, 2))
    check_compliance(TapCycleProcessor(SETTINGS), batch, at)
    whole = run([batch])
    check_cycles(whole)


def test_a_tap_further_than_the_longest_cycle_from_the_previous_gives_no_point() -> None:
    far = T0 + H + 72 * H + 60 * NS  # 72 h 1 min after the first tap
    batches = hourly(T0, T0 + 76 * H)
    batches[0].events.append(metal_tap(CELL, TAPS[0], 1000.0))
    batches[75].events.append(metal_tap(CELL, far, 6000.0))
    assert run(batches) == []


def test_a_gap_is_charge_not_counted_and_the_ce_covers_it_at_the_mean_current() -> None:
    gap = (T0 + 10 * H, T0 + 12 * H)  # no sample strictly inside: 2 h not covered
    batches = [
        telemetry(t, min(t + H, T0 + 40 * H), sent=lambda c, t: not gap[0] < t < gap[1])
        for t in range(T0, T0 + 40 * H, H)
    ]
    batches[0].events.extend(taps(0))
    batches[39].events.extend(taps(1))
    (point,) = run(batches)
    assert point.fields["hours"] == pytest.approx(32.0)
    assert point.fields["hours_covered"] == pytest.approx(30.0, rel=1e-9)
    assert point.fields["charge_kah"] == pytest.approx(300.0 * 30, rel=1e-9)
    assert point.fields["ce"] == pytest.approx(3180.0 / (F * 300.0 * 32), rel=1e-6)


def test_a_repeated_or_older_tap_gives_no_cycle() -> None:
    batches = hourly(T0, T0 + 36 * H)
    batches[0].events.extend(taps(0))
    batches[34].events.extend(taps(1))
    batches[35].events.append(metal_tap(CELL, TAPS[1], 3180.0))  # the same tap again
    batches[35].events.append(metal_tap(CELL, T0 + 2 * H, 50.0))  # older than the newest
    (point,) = run(batches)
    assert point.fields["charge_kah"] == pytest.approx(CHARGE[0], rel=1e-9)


def history_chunks(state: object) -> int:
    data = TapCycleProcessor(SETTINGS).checkpoint(state)
    return len(data["parts"])


@pytest.mark.parametrize("days", [4, 10])
def test_the_state_does_not_grow_with_the_length_of_the_run(days: int) -> None:
    """72 h of minutes at most without taps, and back to the newest tap with them."""
    proc = TapCycleProcessor(SETTINGS)
    state = None
    end = T0 + days * 24 * H
    for t in range(T0, end, H):
        state, _ = proc.apply(telemetry(t, t + H), state)
    assert history_chunks(state) == 72 * 6 + 1  # ten-minute chunks, the oldest partly
    for t in range(end, end + days * 24 * H, H):
        batch = telemetry(t, t + H)
        if (t - end) % (24 * H) == 0:  # a tap a day
            batch.events.append(metal_tap(CELL, t + 30 * 60 * NS, 2000.0))
        state, _ = proc.apply(batch, state)
    assert history_chunks(state) <= 24 * 6 + 1  # back to the newest tap only


def test_a_checkpoint_read_back_gives_the_same_cycles_and_state() -> None:
    proc = TapCycleProcessor(SETTINGS)
    batches = hourly(T0, T0 + 60 * H)
    batches[0].events.extend(taps(0, 1))
    batches[59].events.extend(taps(2))
    state = None
    for batch in batches[:40]:
        state, _ = proc.apply(batch, state)
    restored = orjson.loads(orjson.dumps(proc.checkpoint(state)))
    kept, read = [], []
    for batch in batches[40:]:
        state, produced = proc.apply(batch, state)
        kept += produced
        restored, produced = TapCycleProcessor(SETTINGS).apply(batch, restored)
        read += produced
    assert read == kept
    assert [p.time_ns for p in read] == [TAPS[2]]
    assert read[0].fields["charge_kah"] == pytest.approx(CHARGE[1], rel=1e-9)
    assert proc.checkpoint(restored) == proc.checkpoint(state)


def test_changes_are_the_newest_chunks_and_add_up_to_the_checkpoint() -> None:
    """What the journal keeps (the parts written so far) is the whole checkpoint."""
    proc = TapCycleProcessor(SETTINGS)
    stored: dict[str, object] = {}
    state = None
    batches = hourly(T0, T0 + 40 * H)
    batches[0].events.extend(taps(0))
    batches[34].events.extend(taps(1))
    for batch in batches:
        state, _ = proc.apply(batch, state)
        main, changed, whole = proc.changes(state)
        assert whole == (batch is batches[0])  # a new state replaces what is stored
        assert len([v for v in changed.values() if v is not None]) <= 7  # an hour: 6 or 7
        for key, body in changed.items():
            if body is None:
                stored.pop(key, None)
            else:
                stored[key] = body
    full = proc.checkpoint(state)
    assert {**main, "parts": stored} == full
    read_back = orjson.loads(orjson.dumps(full))
    _, changed, whole = proc.changes(read_back)
    assert whole
    assert changed == full["parts"]


def test_a_months_ce_is_its_metal_over_the_charge_of_its_cycles() -> None:
    cycles = [
        {"metal_kg": 3180.0, "charge_kah": 9600.0, "hours": 32.0, "hours_covered": 32.0},
        # 2 h of 24 not covered: 7,000 kA·h measured is 7,636.36 over the whole cycle
        {"metal_kg": 2400.0, "charge_kah": 7000.0, "hours": 24.0, "hours_covered": 22.0},
        {"metal_kg": 10.0, "charge_kah": 0.0, "hours": 1.0, "hours_covered": 0.0},
    ]
    expected = 100.0 * (3180.0 + 2400.0) / (F * (9600.0 + 7000.0 * 24.0 / 22.0))
    assert month_ce_pct(cycles) == pytest.approx(expected, rel=1e-12)
    assert month_ce_pct([]) is None
