"""Controller clocks (contract 6.5): medians per cell and arrival minute, worked by hand."""

from __future__ import annotations

import numpy as np
import orjson

from processors.kpi.clock import ClockProcessor, ClockSettings
from processors.model import UNTIMED, Batch, Point, SampleBatch
from processors.testing import check_compliance

NS = 1_000_000_000
MS = 1_000_000
M0 = 1_709_251_200 * NS  # 2024-03-01T00:00:00Z, a minute's start
C1, C2, C3 = ("P1", "C1"), ("P1", "C2"), ("P2", "C1")
LIMITS = ClockSettings({"P1": 30.0, "P2": None})  # P2 not watched


def batch(rows: list[tuple[tuple[str, str], float, float | None]]) -> Batch:
    """Rows of (cell, arrival s after M0, lag s or None: untimed), in arrival order."""
    cells = sorted({cell for cell, _, _ in rows})
    arrival = [M0 + round(a * NS) for _, a, _ in rows]
    lags = [lag for _, _, lag in rows]
    ts = [t - round((lag or 0.0) * NS) for t, lag in zip(arrival, lags, strict=True)]
    n = len(rows)
    sb = SampleBatch(
        cells,
        np.array([cells.index(cell) for cell, _, _ in rows], dtype=np.int64),
        np.array(ts, dtype=np.int64),
        np.full(n, 4.2),
        np.full(n, 300.0),
        [None] * n,
        np.array(
            [UNTIMED if lag is None else t for t, lag in zip(arrival, lags, strict=True)],
            dtype=np.int64,
        ),
    )
    return Batch(sb, [])


def clock(cell: tuple[str, str], minute: int, offset_s: float, samples: int) -> Point:
    tags = (("potline", cell[0]), ("cell", cell[1]))
    return Point(
        "cell_clock", tags, {"offset_s": offset_s, "samples": samples}, M0 + minute * 60 * NS
    )


def alarm(cell: tuple[str, str], minute: int, state: str, value: float) -> Point:
    tags = (
        ("potline", cell[0]),
        ("cell", cell[1]),
        ("rule", "clock_drift"),
        ("severity", "warning"),
    )
    return Point("alarm", tags, {"state": state, "value": value}, M0 + minute * 60 * NS)


def test_a_minute_is_the_median_of_its_live_samples_written_when_the_next_begins() -> None:
    proc = ClockProcessor(LIMITS)
    state, points = proc.apply(
        batch(
            [
                # C1, minute 0: lags 0.2, 0.4, 10.0 s: median 0.4 (one slow sample moves nothing)
                (C1, 1.0, 0.2),
                (C1, 2.0, 10.0),
                (C1, 3.0, None),  # an object of an array: not timed
                (C1, 4.0, 0.4),
                # C2, minute 0: four lags 1, 2, 4, 9 s: median (2 + 4) / 2 = 3 s
                (C2, 5.0, 9.0),
                (C2, 6.0, 1.0),
                (C2, 7.0, 4.0),
                (C2, 8.0, 2.0),
            ]
        ),
        None,
    )
    assert points == []  # neither minute is over yet
    # a sample in minute 1 closes C1's minute 0; untimed ones close nothing
    state, points = proc.apply(batch([(C2, 61.0, None), (C1, 61.0, 0.3)]), state)
    assert points == [clock(C1, 0, 0.4, 3)]
    state, points = proc.apply(batch([(C2, 125.0, 0.1)]), state)
    assert points == [clock(C2, 0, 3.0, 4)]
    _, points = proc.flush(state)  # the open minutes as they stand, not judged
    assert sorted(points, key=lambda p: p.tags) == [clock(C1, 1, 0.3, 1), clock(C2, 2, 0.1, 1)]


def test_the_alarm_is_raised_beyond_the_limit_and_cleared_within_it() -> None:
    proc = ClockProcessor(LIMITS)
    rows = [
        (C1, 10.0, 90.0),  # minute 0: 90 s behind, beyond 30 s
        (C1, 70.0, 89.5),  # minute 1: still beyond
        (C1, 130.0, -31.0),  # minute 2: 31 s ahead: |−31| > 30, still raised
        (C1, 190.0, 30.0),  # minute 3: exactly the limit is within it: cleared
        (C1, 250.0, 0.1),  # minute 4: only closes minute 3
        (C3, 10.0, 600.0),  # P2 is not watched: its minutes only
        (C3, 70.0, 0.0),
    ]
    _, points = proc.apply(batch(sorted(rows, key=lambda r: r[1])), None)
    assert points == [
        clock(C1, 0, 90.0, 1),
        alarm(C1, 0, "raised", 90.0),
        clock(C3, 0, 600.0, 1),
        clock(C1, 1, 89.5, 1),
        clock(C1, 2, -31.0, 1),
        clock(C1, 3, 30.0, 1),
        alarm(C1, 3, "cleared", 30.0),
    ]
    assert proc.alerts(points) == [alarm(C1, 0, "raised", 90.0), alarm(C1, 3, "cleared", 30.0)]


def test_a_watch_turned_off_clears_its_raised_alarm_at_the_next_minute() -> None:
    state, points = ClockProcessor(LIMITS).apply(batch([(C1, 1.0, 90.0), (C1, 61.0, 90.0)]), None)
    assert alarm(C1, 0, "raised", 90.0) in points
    off = ClockProcessor(ClockSettings({"P1": None}))
    state = orjson.loads(orjson.dumps(off.checkpoint(state)))
    _, points = off.apply(batch([(C1, 121.0, 90.0)]), state)
    assert points == [clock(C1, 1, 90.0, 1), alarm(C1, 1, "cleared", 90.0)]


def test_a_minute_never_goes_back() -> None:
    # an arrival stamped in minute 0 after one of minute 1 (the host's clock stepped back)
    # counts in minute 1, so the points do not depend on where a batch ends
    _, points = ClockProcessor(LIMITS).apply(
        batch([(C1, 61.0, 1.0), (C1, 59.0, 3.0), (C1, 121.0, 0.0)]), None
    )
    assert points == [clock(C1, 1, 2.0, 2)]


def test_a_batch_without_live_samples_changes_nothing() -> None:
    proc = ClockProcessor(LIMITS)
    state, _ = proc.apply(batch([(C1, 1.0, 0.5)]), None)
    untimed = batch([(C1, 70.0, None)])
    untimed.samples.arrival_ns = None  # as the engine builds a batch of arrays only
    again, points = proc.apply(untimed, state)
    assert points == []
    assert proc.checkpoint(again) == {"cells": {"P1/C1": [M0, [500], False]}}


def test_compliance_across_minutes_and_a_raised_alarm() -> None:
    rows = [
        (cell, k * 7.0, None if k % 5 == 0 else (90.0 if k < 20 else 0.5) + (k % 3) * 0.25)
        for k in range(40)
        for cell in (C1, C2, C3)
    ]
    b = batch(rows)
    for at in (0, 17, 40, 61, 119, len(rows)):
        check_compliance(ClockProcessor(LIMITS), b, at)


def test_late_samples_are_timed_through_batch_timed() -> None:
    # the engine leaves late samples out of ``samples`` and gives every live one in
    # ``timed``: a clock that jumped 90 s back sends only late samples for a while
    everything = batch([(C1, 1.0, 90.0), (C1, 2.0, 90.5), (C1, 61.0, 0.5)])
    in_order = batch([(C1, 61.0, 0.5)])
    _, points = ClockProcessor(LIMITS).apply(Batch(in_order.samples, [], everything.samples), None)
    # minute 0: the median of 90 and 90.5 s, 90.25; the least delayed 90 > 30 raises
    assert points == [clock(C1, 0, 90.25, 2), alarm(C1, 0, "raised", 90.0)]
    _, points = ClockProcessor(LIMITS).apply(in_order, None)
    assert points == []  # without them minute 0 has no live sample at all


def test_a_drained_backlog_reports_its_median_but_raises_nothing() -> None:
    # cellmon was down: the broker kept C1's samples and delivers them in a burst, the
    # oldest 600 s old, up to the live one; its clock is right, the queue made the delays
    rows = [(C1, 1.0, 600.0), (C1, 1.1, 400.0), (C1, 1.2, 200.0), (C1, 1.3, 0.2)]
    rows.append((C1, 61.0, 0.1))  # the next minute closes the first
    _, points = ClockProcessor(LIMITS).apply(batch(rows), None)
    # the median of 600, 400, 200 and 0.2 is (400 + 200) / 2 = 300; the least delayed 0.2
    assert points == [clock(C1, 0, 300.0, 4)]


def test_a_clock_behind_raises_whatever_the_delays_of_its_minute() -> None:
    # 90 s behind and delivered with delays of up to 5 s: the least delayed says 90
    rows = [(C1, 1.0, 95.0), (C1, 2.0, 90.0), (C1, 3.0, 92.0), (C1, 61.0, 90.0)]
    _, points = ClockProcessor(LIMITS).apply(batch(rows), None)
    assert points == [clock(C1, 0, 92.0, 3), alarm(C1, 0, "raised", 90.0)]
