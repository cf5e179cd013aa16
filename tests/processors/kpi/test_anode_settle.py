"""The settling after an anode change (contract 6.3), worked out by hand.

The trace: a sample every 10 s; 4.10 V for the 30 minutes before the change's minute c
(the level), the change half-way through minute c, then minute means 4.40, 4.30, 4.20
(minutes c+1 … c+3) and 4.12 from c+4 on. |4.12 − 4.10| = 20 mV is within the 50 mV band
and 4.20 (100 mV) is not, so minutes 4 … 13 are the first 10 running in band:
``settle_min`` = 4, and the largest minute above the level before it is 4.40:
``peak_excess_mv`` = 300.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.kpi.anode_settle import AnodeSettleProcessor, SettleSettings
from processors.kpi.periods import Calendar
from processors.model import Batch, Event, Point, SampleBatch
from processors.testing import anode_change, at_rate, check_compliance, merged, samples, split

NS = 1_000_000_000
MIN = 60 * NS
C = int(datetime(2024, 3, 10, 2, 0, tzinfo=UTC).timestamp()) * NS  # the change's minute
CHANGE = C + 30 * NS  # half-way through it
CELL = ("P1", "C1")
EMPTY = samples([], [])
TAGS = (("potline", "P1"), ("cell", "C1"), ("anode", "7"), ("block", "590"))


def processor(max_min: int = 480, band_mv: float = 50.0) -> AnodeSettleProcessor:
    return AnodeSettleProcessor(
        SettleSettings(
            Calendar("Asia/Shanghai", (time(0), time(8), time(16))),
            {"P1": (band_mv, max_min)},
            900.0,
        )
    )


def minute_means(after: list[float], tail: float, before: float = 4.10) -> Callable[[int], float]:
    """Volts: ``before`` up to the change, then ``after`` minute by minute, then ``tail``."""

    def volts(t: int) -> float:
        k = (t - C) // MIN
        if t < CHANGE:
            return before
        if k == 0:
            return 4.50  # the change's own minute counts on neither side
        return after[k - 1] if k <= len(after) else tail

    return volts


def trace(
    volts: Callable[[int], float], t0: int, t1: int, cell: tuple[str, str] = CELL
) -> SampleBatch:
    return samples([cell], at_rate(t0, t1, 10), voltage=lambda c, t: volts(t))


STEP = minute_means([4.40, 4.30, 4.20], 4.12)
CHANGE_EVENT = anode_change(CELL, CHANGE, 7)


def run(batches: list[Batch], proc: AnodeSettleProcessor | None = None) -> list[Point]:
    """The batches one by one, the state through JSON between them as after a restart."""
    proc, state, points = proc or processor(), None, []
    for batch in batches:
        state, out = proc.apply(batch, state)
        state = orjson.loads(orjson.dumps(proc.checkpoint(state)))
        points += out
    return points


def settle(points: list[Point]) -> dict[str, Any]:
    found = [p for p in points if p.measurement == "anode_change"]
    assert found, "no anode_change point"
    assert {(p.tags, p.time_ns) for p in found} == {(TAGS, CHANGE)}
    return found[-1].fields


def test_a_known_trace_settles_at_minute_4_with_300_mv() -> None:
    batch = Batch(trace(STEP, C - 31 * MIN, C + 20 * MIN), [CHANGE_EVENT])
    fields = settle(run([batch]))
    assert fields == {"settle_min": 4, "peak_excess_mv": pytest.approx(300.0), "settled": True}


def test_a_change_logged_after_its_samples_gives_the_same() -> None:
    late = [Batch(trace(STEP, C - 31 * MIN, C + 20 * MIN), []), Batch(EMPTY, [CHANGE_EVENT])]
    fields = settle(run(late))
    assert fields == {"settle_min": 4, "peak_excess_mv": pytest.approx(300.0), "settled": True}


def test_minute_batches_through_checkpoints_give_the_same() -> None:
    cuts = range(C - 31 * MIN, C + 21 * MIN, MIN)
    batches = [Batch(trace(STEP, a, a + MIN), []) for a in cuts]
    batches.insert(40, Batch(EMPTY, [CHANGE_EVENT]))  # logged 9 minutes after the change
    fields = settle(run(batches))
    assert fields == {"settle_min": 4, "peak_excess_mv": pytest.approx(300.0), "settled": True}


def test_a_minute_out_of_band_restarts_the_run_and_counts_in_the_peak() -> None:
    # 4.45 at minute 6 (350 mV) breaks the run that began at 4: settled from minute 7
    volts = minute_means([4.40, 4.30, 4.20, 4.12, 4.12, 4.45], 4.13)
    fields = settle(run([Batch(trace(volts, C - 31 * MIN, C + 20 * MIN), [CHANGE_EVENT])]))
    assert fields == {"settle_min": 7, "peak_excess_mv": pytest.approx(350.0), "settled": True}


def test_a_minute_without_samples_breaks_the_run() -> None:
    gap = C + 8 * MIN  # minute 8 has no sample
    sb = samples(
        [CELL],
        at_rate(C - 31 * MIN, C + 25 * MIN, 10),
        voltage=lambda c, t: STEP(t),
        sent=lambda c, t: not gap <= t < gap + MIN,
    )
    fields = settle(run([Batch(sb, [CHANGE_EVENT])]))
    assert fields == {"settle_min": 9, "peak_excess_mv": pytest.approx(300.0), "settled": True}


def test_unsettled_after_the_maximum() -> None:
    # 4.30 (200 mV) until the 30 minutes followed are over: settle_min 30, settled false
    volts = minute_means([4.40], 4.30)
    proc = processor(max_min=30)
    points = run([Batch(trace(volts, C - 31 * MIN, C + 30 * MIN), [CHANGE_EVENT])], proc)
    assert not [p for p in points if p.measurement == "anode_change"]  # minute 30 still open
    points = run([Batch(trace(volts, C - 31 * MIN, C + 32 * MIN), [CHANGE_EVENT])], proc)
    fields = settle(points)
    assert fields == {"settle_min": 30, "peak_excess_mv": pytest.approx(300.0), "settled": False}


def test_too_few_minutes_before_gives_no_settle_fields_but_the_crew() -> None:
    event = Event("P1", "C1", CHANGE, "anode_change", {"anode": 7, "block": "590", "crew": "B"})
    points = run([Batch(trace(STEP, C - 19 * MIN, C + 20 * MIN), [event])])  # 19 of 30
    assert [(p.measurement, p.fields) for p in points] == [("anode_change", {"crew": "B"})]


def test_the_crew_is_written_at_once_and_with_the_settling() -> None:
    event = Event("P1", "C1", CHANGE, "anode_change", {"anode": 7, "block": "590", "crew": "B"})
    points = run([Batch(EMPTY, [event]), Batch(trace(STEP, C - 31 * MIN, C + 20 * MIN), [])])
    assert points[0].fields == {"crew": "B"}
    assert settle(points)["crew"] == "B"


def test_the_month_of_a_cell() -> None:
    # change 1 as above (4 min); change 2 a day later never settles in 30 min (counts 30)
    day = 86_400 * NS
    unsettled = minute_means([4.40], 4.30)
    second = anode_change(CELL, CHANGE + day, 8)
    batches = [
        Batch(trace(STEP, C - 31 * MIN, C + 45 * MIN), [CHANGE_EVENT]),
        Batch(
            trace(lambda t: unsettled(t - day), C + day - 31 * MIN, C + day + 45 * MIN), [second]
        ),
    ]
    months = [p for p in run(batches, processor(max_min=30)) if p.measurement == "anode_settle"]
    # Asia/Shanghai: March 2024 starts 2024-02-29T16:00Z
    march = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
    assert {(p.tags, p.time_ns) for p in months} == {((("potline", "P1"), ("cell", "C1")), march)}
    assert months[-1].fields == {
        "changes": 2,
        "settle_min_mean": 17.0,
        "settle_min_max": 30,
        "unsettled": 1,
    }


def test_checkpoint_round_trip_is_compact_and_equal() -> None:
    proc = processor()
    state, _ = proc.apply(Batch(trace(STEP, C - 31 * MIN, C + 5 * MIN), [CHANGE_EVENT]), None)
    data = proc.checkpoint(state)
    again = proc.checkpoint(orjson.loads(orjson.dumps(data)))
    assert again == data
    assert isinstance(data["ring"]["means"], str)  # bytes, not a list per minute


def test_keeps_the_batch_contract() -> None:
    batch = Batch(trace(STEP, C - 31 * MIN, C + 20 * MIN), [CHANGE_EVENT])
    for at in (0, 100, 186, 187, 250, len(batch.samples)):
        check_compliance(processor(), batch, at)


@settings(max_examples=60, deadline=None)
@given(
    cut=st.integers(0, 51 * 6),
    event_in=st.sampled_from(["first", "second", "after"]),
    noise=st.lists(st.floats(-0.04, 0.04), min_size=3, max_size=3),
)
def test_any_cut_and_any_arrival_of_the_change_gives_the_same_points(
    cut: int, event_in: str, noise: list[float]
) -> None:
    def volts(t: int) -> float:
        return STEP(t) + noise[(t // (10 * NS)) % 3]

    sb = trace(volts, C - 31 * MIN, C + 20 * MIN)
    whole = run([Batch(sb, [CHANGE_EVENT])])
    first, second = split(Batch(sb, []), cut)
    events = {"first": [], "second": [], "after": []}
    events[event_in] = [CHANGE_EVENT]
    cut_points = run(
        [
            Batch(first.samples, events["first"]),
            Batch(second.samples, events["second"]),
            Batch(EMPTY, events["after"]),
        ]
    )
    assert merged(cut_points) == merged(whole)
    assert "settle_min" in settle(whole)


def test_many_cells_one_vectorised_batch_each_minute() -> None:
    cells = [("P1", f"C{k:03d}") for k in range(50)]
    events = [anode_change(c, CHANGE, 7) for c in cells[::7]]
    times = at_rate(C - 31 * MIN, C + 20 * MIN, 10)
    sb = samples(cells, times, voltage=lambda c, t: STEP(t) + 0.001 * c)
    whole = run([Batch(sb, events)])
    per_second = [
        Batch(samples(cells, [t], voltage=lambda c, t: STEP(t) + 0.001 * c), []) for t in times
    ]
    cut = run([*per_second, Batch(EMPTY, events)])
    assert merged(cut) == merged(whole)
    settled = [p for p in whole if "settle_min" in p.fields]
    assert len(settled) == len(events)
    assert all(p.fields["settle_min"] == 4 for p in settled)
    assert np.allclose([p.fields["peak_excess_mv"] for p in settled], 300.0)


def test_a_month_recalculated_from_its_change_points() -> None:
    # two decided changes of C1 (4 min; unsettled at 30) and one of C2 (12 min); a point
    # without settle fields (the cycle's) is not a decided change
    march = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
    april = int(datetime(2024, 3, 31, 16, tzinfo=UTC).timestamp()) * NS

    def point(cell: str, t: int, fields: dict[str, Any]) -> Point:
        tags = (("potline", "P1"), ("cell", cell), ("anode", "7"), ("block", "590"))
        return Point("anode_change", tags, fields, t)

    days = [
        point("C1", CHANGE, {"target_days": 31.0}),
        point("C1", CHANGE, {"settle_min": 4, "peak_excess_mv": 300.0, "settled": True}),
        point("C1", CHANGE + MIN, {"settle_min": 30, "peak_excess_mv": 1.0, "settled": False}),
        point("C2", CHANGE, {"settle_min": 12, "peak_excess_mv": 1.0, "settled": True}),
        point("C2", CHANGE + 2 * MIN, {"target_days": 31.0}),
    ]
    _, points = processor().summed(None, ("P1", "month", march), april, days, [], april)
    assert {dict(p.tags)["cell"]: p.fields for p in points} == {
        "C1": {"changes": 2, "settle_min_mean": 17.0, "settle_min_max": 30, "unsettled": 1},
        "C2": {"changes": 1, "settle_min_mean": 12.0, "settle_min_max": 12, "unsettled": 0},
    }
    assert {p.time_ns for p in points} == {march}


def test_rebase_takes_the_periods_followed_changes_from_history() -> None:
    # live followed nothing (the change was backfilled); history follows it: live goes on
    proc = processor()
    live, _ = proc.apply(Batch(trace(STEP, C - 31 * MIN, C + 2 * MIN), []), None)
    fresh, _ = proc.apply(Batch(trace(STEP, C - 31 * MIN, C + 2 * MIN), [CHANGE_EVENT]), None)
    day = int(datetime(2024, 3, 9, 16, tzinfo=UTC).timestamp()) * NS  # local 2024-03-10
    march = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
    rebased = proc.rebase(live, fresh, [("P1", "day", day), ("P1", "month", march)])
    _, points = proc.apply(Batch(trace(STEP, C + 2 * MIN, C + 20 * MIN), []), rebased)
    assert settle(points)["settle_min"] == 4


def test_rebase_of_another_day_keeps_the_changes_live_follows() -> None:
    # a recalculation of 2024-03-02 (and so of March) leaves the change of 03-10 followed
    proc = processor()
    live, _ = proc.apply(Batch(trace(STEP, C - 31 * MIN, C + 2 * MIN), [CHANGE_EVENT]), None)
    other_day = int(datetime(2024, 3, 1, 16, tzinfo=UTC).timestamp()) * NS
    march = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
    rebased = proc.rebase(live, None, [("P1", "day", other_day), ("P1", "month", march)])
    _, points = proc.apply(Batch(trace(STEP, C + 2 * MIN, C + 20 * MIN), []), rebased)
    assert settle(points)["settle_min"] == 4


def test_a_shorter_maximum_reloaded_ends_a_change_followed_longer() -> None:
    # followed 40 minutes under 480, then the config says 30: unsettled at 30 at once
    volts = minute_means([4.40], 4.30)
    state, _ = processor().apply(
        Batch(trace(volts, C - 31 * MIN, C + 42 * MIN), [CHANGE_EVENT]), None
    )
    state = orjson.loads(orjson.dumps(processor().checkpoint(state)))
    _, points = processor(max_min=30).apply(
        Batch(trace(volts, C + 42 * MIN, C + 44 * MIN), []), state
    )
    fields = settle(points)
    assert fields == {"settle_min": 30, "peak_excess_mv": pytest.approx(300.0), "settled": False}
