"""Anode change cycles against the target, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np
import orjson
import pytest

from processors.kpi.anode_cycle import AnodeCycleProcessor, AnodeSettings, AnodeTargets
from processors.kpi.periods import Calendar
from processors.model import Batch, Event, SampleBatch

NS = 1_000_000_000
DAY = 86_400 * NS
# Asia/Shanghai is UTC+8: local midnight of 2024-03-01 is 2024-02-29T16:00Z
DAY0 = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
EMPTY = SampleBatch(
    [], *(np.zeros(0, dtype=t) for t in (np.int64, np.int64)), np.zeros(0), np.zeros(0), []
)


def processor() -> AnodeCycleProcessor:
    cal = Calendar("Asia/Shanghai", (time(0), time(8), time(16)))
    return AnodeCycleProcessor(
        AnodeSettings(
            calendar=cal,
            targets={"P1": TARGETS},
            plant_targets=TARGETS,
            complete_grace_s=900.0,
        )
    )


TARGETS = AnodeTargets(cycle_days=31.0, tolerance_days=1.0, block="590")


def change(ts: int, anode: int = 7, block: str = "590", cell: str = "C1") -> Event:
    return Event("P1", cell, ts, "anode_change", {"anode": anode, "block": block})


def run(*batches: list[Event], state=None):
    proc, points = processor(), []
    for events in batches:
        state, out = proc.apply(Batch(EMPTY, events), state)
        state = orjson.loads(orjson.dumps(proc.checkpoint(state)))  # as checkpointed in the journal
        points += out
    return state, points


def changes(points):
    return [p for p in points if p.measurement == "anode_change"]


@pytest.mark.parametrize(
    ("days", "deviation", "on_target"),
    [(31.0, 0.0, True), (32.0, 1.0, True), (33.0, 2.0, False), (29.5, -1.5, False)],
    ids=["exact", "a-day-late", "two-days-late", "early"],
)
def test_cycle_against_the_target(days: float, deviation: float, on_target: bool) -> None:
    _, points = run([change(DAY0 + 3600 * NS)], [change(DAY0 + 3600 * NS + int(days * DAY))])
    first, second = changes(points)
    assert "cycle_days" not in first.fields  # a first change has no history
    assert first.fields["target_days"] == 31.0
    assert second.fields["cycle_days"] == pytest.approx(days)
    assert second.fields["deviation_days"] == pytest.approx(deviation)
    assert second.fields["on_target"] is on_target
    assert dict(second.tags) == {"potline": "P1", "cell": "C1", "anode": "7", "block": "590"}


def test_positions_are_separate_and_a_repeat_has_no_cycle() -> None:
    t = DAY0 + 3600 * NS
    _, points = run(
        [change(t, anode=1), change(t, anode=2)],
        [change(t + 31 * DAY, anode=1), change(t + 31 * DAY, anode=1)],
    )
    cycles = [p.fields.get("cycle_days") for p in changes(points)]
    assert cycles == [None, None, pytest.approx(31.0), None]


def test_block_mix_and_potline_shares_of_a_day() -> None:
    t = DAY0 + 40 * DAY + 3600 * NS  # the day after history
    history = [change(DAY0 + 3600 * NS, anode=a) for a in (1, 2)]
    today = [
        change(t, anode=1, block="590"),  # cycle 40 d: off target
        change(t + NS, anode=2, block="560"),  # cycle 40 d: off target
        change(t + 2 * NS, anode=3, block="590"),
    ]  # first seen: no cycle
    _, points = run(history, today)
    day = [
        p
        for p in points
        if p.measurement == "anode_potline"
        and p.time_ns == DAY0 + 40 * DAY
        and dict(p.tags)["period"] == "day"
    ][-1]
    assert day.fields["changes"] == 3
    assert day.fields["target_block_share_pct"] == pytest.approx(200 / 3)
    assert day.fields["mean_cycle_days"] == pytest.approx(40.0)
    assert day.fields["on_target_pct"] == 0.0


def test_history_survives_a_restart_and_overdue_anodes_are_listed() -> None:
    state, _ = run([change(DAY0 + 3600 * NS, anode=5)])
    # a later batch, with the state read back from JSON: the next change knows its cycle
    _, points = run(
        [Event("P1", "C1", DAY0 + 34 * DAY, "metal_tap", {"metal_kg": 1.0})],
        [Event("P1", "C1", DAY0 + 35 * DAY, "metal_tap", {"metal_kg": 1.0})],
        state=state,
    )
    overdue = [p for p in points if p.measurement == "anode_overdue"]
    assert overdue
    assert overdue[-1].time_ns == DAY0 + 35 * DAY
    # 35 days minus one hour since the change, against 31 + 1 days
    assert overdue[-1].fields["days_since_change"] == pytest.approx(35 - 1 / 24)
    assert overdue[-1].fields["overdue_days"] == pytest.approx(35 - 1 / 24 - 32)
    _, points = run([change(DAY0 + 3600 * NS + 31 * DAY, anode=5)], state=state)
    assert changes(points)[0].fields["cycle_days"] == pytest.approx(31.0)


def samples(series: list[tuple[int, float]]) -> SampleBatch:
    t = np.array([s[0] for s in series], dtype=np.int64)
    v = np.array([s[1] for s in series], dtype=np.float64)
    return SampleBatch(
        [("P1", "C1")],
        np.zeros(len(t), dtype=np.int64),
        t,
        v,
        np.full(len(t), 300.0),
        [None] * len(t),
    )


def test_a_backfilled_change_starts_the_positions_next_cycle() -> None:
    # live knew the change of day 0; the historian had the one of day 30 the live missed
    live, _ = run([change(DAY0 + 3600 * NS)])
    fresh, _ = run([change(DAY0 + 3600 * NS), change(DAY0 + 3600 * NS + 30 * DAY)])
    month = ("P1", "month", DAY0)
    rebased = processor().rebase(live, fresh, [month])
    _, points = run([change(DAY0 + 3600 * NS + 61 * DAY)], state=rebased)
    (after,) = changes(points)
    assert after.fields["cycle_days"] == pytest.approx(31.0)  # from day 30, not day 0
