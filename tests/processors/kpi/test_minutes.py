"""Hand-worked minute aggregates (``cell_1m``, contract 5.4): every expected mean, minimum,
maximum and count is arithmetic written out here, not computed by the code under test."""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np
import pytest

from processors.kpi.minutes import MinuteProcessor, local_minute_starts
from processors.kpi.periods import Calendar
from processors.model import Batch, FieldValue, Point, SampleBatch
from processors.testing import merged, split

NS = 1_000_000_000
MS = 1_000_000
SHIFTS = (time(0), time(8), time(16))


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


# Asia/Shanghai is UTC+8 all year: the local minute 08:00 of 2024-03-01 starts at 00:00Z.
T = utc(2024, 3, 1, 0, 0)

Row = tuple[int, int, float, float, dict[str, float] | None]  # cell, ts, U, I, extra


def batch(cells: list[str], rows: list[Row]) -> Batch:
    """Samples in the given (arrival) order of cells ``("P1", name)``."""
    sb = SampleBatch(
        [("P1", c) for c in cells],
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows], dtype=np.float64),
        [r[4] for r in rows],
    )
    return Batch(sb, [])


def processor(zone: str = "Asia/Shanghai") -> MinuteProcessor:
    return MinuteProcessor(Calendar(zone, SHIFTS))


def run(proc: MinuteProcessor, *batches: Batch, flush: bool = False) -> tuple[object, list[Point]]:
    state: object = None
    points: list[Point] = []
    for b in batches:
        state, out = proc.apply(b, state)
        points += out
    if flush:
        state, out = proc.flush(state)
        points += out
    return state, points


def fields(points: list[Point], cell: str, start_ns: int) -> dict[str, FieldValue]:
    """The last write of a cell's minute: what InfluxDB keeps."""
    return merged(points)[("cell_1m", (("potline", "P1"), ("cell", cell)), start_ns)]


def assert_same_points(got: list[Point], want: list[Point]) -> None:
    """The same points once rewrites are merged, floats to 1e-12 (sums taken in parts)."""
    a, b = merged(got), merged(want)
    assert a.keys() == b.keys()
    for key, values in b.items():
        assert a[key] == pytest.approx(values, rel=1e-12), key


def two_minutes() -> list[Row]:
    """C1 at 1 Hz from 08:00:00 local for two minutes, and one sample of the third.

    Minute 08:00: 4.10 V and 300 kA for 30 s, then 4.30 V and 306 kA for 30 s; no noise.
    Minute 08:01: 4.00 V and 310 kA except a 9.00 V spike at 08:01:30; noise 2.0 µΩ at
    08:01:00 and 4.0 µΩ at 08:01:30 only. Minute 08:02: one sample, 4.20 V.
    """
    rows: list[Row] = []
    for k in range(60):
        rows.append((0, T + k * NS, 4.10 if k < 30 else 4.30, 300.0 if k < 30 else 306.0, None))
    for k in range(60, 120):
        noise = {"noise_uohm": 2.0} if k == 60 else {"noise_uohm": 4.0} if k == 90 else None
        rows.append((0, T + k * NS, 9.00 if k == 90 else 4.00, 310.0, noise))
    rows.append((0, T + 120 * NS, 4.20, 310.0, None))
    return rows


def test_a_minute_is_the_plain_mean_min_max_and_count_of_its_samples() -> None:
    _, points = run(processor(), batch(["C1"], two_minutes()))
    assert fields(points, "C1", T) == {
        "voltage_v_mean": pytest.approx((30 * 4.10 + 30 * 4.30) / 60),  # 4.20
        "voltage_v_min": 4.10,
        "voltage_v_max": 4.30,
        "current_ka_mean": pytest.approx((30 * 300.0 + 30 * 306.0) / 60),  # 303
        "samples": 60,
    }
    assert fields(points, "C1", T + 60 * NS) == {
        "voltage_v_mean": pytest.approx((59 * 4.00 + 9.00) / 60),  # 245 / 60
        "voltage_v_min": 4.00,
        "voltage_v_max": 9.00,
        "current_ka_mean": pytest.approx(310.0),
        "noise_uohm_mean": pytest.approx((2.0 + 4.0) / 2),  # over the samples that sent it
        "samples": 60,
    }


def test_a_minute_is_written_once_the_data_passes_its_end_and_the_open_one_at_flush() -> None:
    proc = processor()
    _, points = run(proc, batch(["C1"], two_minutes()))
    # 08:02 has one sample and nothing after it: still open
    assert [p.time_ns for p in points] == [T, T + 60 * NS]
    _, flushed = run(proc, batch(["C1"], two_minutes()), flush=True)
    assert [p.time_ns for p in flushed] == [T, T + 60 * NS, T + 120 * NS]
    assert fields(flushed, "C1", T + 120 * NS)["samples"] == 1
    assert fields(flushed, "C1", T + 120 * NS)["voltage_v_mean"] == 4.20


def test_a_minute_written_at_flush_is_rewritten_fuller_when_more_of_it_arrives() -> None:
    proc = processor()
    first = [(0, T + k * NS, 4.0 + k, 300.0, None) for k in range(3)]  # 4, 5, 6 V
    state, at_flush = proc.apply(batch(["C1"], first), None)
    state, at_flush = proc.flush(state)
    assert [(p.time_ns, p.fields["samples"]) for p in at_flush] == [(T, 3)]
    more = [(0, T + 3 * NS, 9.0, 300.0, None), (0, T + 60 * NS, 4.0, 300.0, None)]
    state, later = proc.apply(batch(["C1"], more), state)
    assert [p.time_ns for p in later] == [T]  # the same point (tags, time) ...
    assert later[0].fields["samples"] == 4  # ... with the fuller values: 4, 5, 6, 9 V
    assert later[0].fields["voltage_v_mean"] == pytest.approx((4 + 5 + 6 + 9) / 4)
    assert later[0].fields["voltage_v_max"] == 9.0


def test_two_cells_interleaved_are_aggregated_apart() -> None:
    """C1 at 1 Hz, C2 every 2 s, arriving interleaved; each closed by a sample at 08:01."""
    rows: list[Row] = []
    for k in range(60):
        rows.append((0, T + k * NS, 4.0, 300.0, None))
        if k % 2 == 0:
            rows.append((1, T + k * NS + 500 * MS, 4.5 if k < 30 else 5.5, 301.0, None))
    rows += [(1, T + 60 * NS, 4.0, 300.0, None), (0, T + 60 * NS, 4.0, 300.0, None)]
    _, points = run(processor(), batch(["C1", "C2"], rows))
    assert fields(points, "C1", T)["samples"] == 60
    assert fields(points, "C1", T)["voltage_v_mean"] == pytest.approx(4.0)
    c2 = fields(points, "C2", T)
    assert c2["samples"] == 30  # k = 0, 2, …, 58
    assert c2["voltage_v_mean"] == pytest.approx((15 * 4.5 + 15 * 5.5) / 30)  # 5.0
    assert (c2["voltage_v_min"], c2["voltage_v_max"]) == (4.5, 5.5)
    assert c2["current_ka_mean"] == pytest.approx(301.0)


def test_samples_out_of_order_within_a_batch_are_sorted_by_time() -> None:
    rows = two_minutes()
    shuffled = [rows[k] for k in np.random.default_rng(7).permutation(len(rows)).tolist()]
    _, ordered = run(processor(), batch(["C1"], rows), flush=True)
    _, points = run(processor(), batch(["C1"], shuffled), flush=True)
    assert_same_points(points, ordered)
    assert len(merged(ordered)) == 3


def test_minute_boundaries_are_local_minutes_in_asia_shanghai() -> None:
    """07:59:59.999 and 08:00:00.000 local (23:59:59.999Z and 00:00Z) are two minutes."""
    rows: list[Row] = [
        (0, T - 60 * NS, 4.0, 300.0, None),  # 07:59:00 local: opens the minute
        (0, T - 1 * MS, 5.0, 300.0, None),  # its last millisecond
        (0, T, 6.0, 300.0, None),  # 08:00:00.000 starts the next
    ]
    _, points = run(processor(), batch(["C1"], rows), flush=True)
    assert merged(points) == {
        ("cell_1m", (("potline", "P1"), ("cell", "C1")), utc(2024, 2, 29, 23, 59)): {
            "voltage_v_mean": 4.5,
            "voltage_v_min": 4.0,
            "voltage_v_max": 5.0,
            "current_ka_mean": 300.0,
            "samples": 2,
        },
        ("cell_1m", (("potline", "P1"), ("cell", "C1")), utc(2024, 3, 1, 0, 0)): {
            "voltage_v_mean": 6.0,
            "voltage_v_min": 6.0,
            "voltage_v_max": 6.0,
            "current_ka_mean": 300.0,
            "samples": 1,
        },
    }


def test_minutes_come_from_the_zone_even_where_its_offset_is_not_whole_minutes() -> None:
    """Liberia kept UTC−0:44:30 until 1972-01-07T00:44:30Z, then UTC.

    00:44:20Z was 23:59:50 local (minute 23:59 local = 00:43:30Z); 00:44:40Z is 00:44:40
    local (minute 00:44:00Z). A time in the middle of 1971: 12:00:10Z was 11:15:40 local,
    minute 11:15 local = 11:59:30Z.
    """
    ts = np.array(
        [utc(1972, 1, 7, 0, 44, 20), utc(1972, 1, 7, 0, 44, 40), utc(1971, 6, 1, 12, 0, 10)],
        dtype=np.int64,
    )
    starts = local_minute_starts(ts, Calendar("Africa/Monrovia", SHIFTS))
    assert starts.tolist() == [
        utc(1972, 1, 7, 0, 43, 30),
        utc(1972, 1, 7, 0, 44, 0),
        utc(1971, 6, 1, 11, 59, 30),
    ]


def test_across_a_daylight_saving_change_minutes_stay_utc_aligned() -> None:
    """Berlin went from UTC+1 to UTC+2 at 2024-03-31T01:00Z (02:00 → 03:00 local)."""
    ts = np.array([utc(2024, 3, 31, 0, 59, 59), utc(2024, 3, 31, 1, 0, 1)], dtype=np.int64)
    starts = local_minute_starts(ts, Calendar("Europe/Berlin", SHIFTS))
    assert starts.tolist() == [utc(2024, 3, 31, 0, 59), utc(2024, 3, 31, 1, 0)]


@pytest.mark.parametrize("at", [1, 30, 59, 60, 61, 90, 120])
def test_a_batch_cut_anywhere_gives_the_same_points_and_state(at: int) -> None:
    """Cut mid-minute (30, 90), at a minute's first sample (60, 120) or next to it."""
    whole = batch(["C1"], two_minutes())
    first, second = split(whole, at)
    proc = processor()
    whole_state, whole_points = run(proc, whole, flush=True)
    state, cut_points = proc.apply(first, None)
    state, rest = proc.apply(second, state)
    state, tail = proc.flush(state)
    assert_same_points([*cut_points, *rest, *tail], whole_points)
    state, whole_state = proc.checkpoint(state), proc.checkpoint(whole_state)
    opened, whole_open = state["open"]["P1"]["C1"], whole_state["open"]["P1"]["C1"]
    assert opened == pytest.approx(whole_open, rel=1e-12)


def test_an_empty_batch_changes_nothing() -> None:
    proc = processor()
    state, _ = proc.apply(batch(["C1"], two_minutes()), None)
    after, points = proc.apply(batch([], []), state)
    assert (after, points) == (state, [])


DAY = utc(2024, 2, 29, 16)  # local midnight of 2024-03-01 in Asia/Shanghai


def test_a_recalculation_continues_the_live_open_minute_from_the_rebuilt_sums() -> None:
    """Live saw 4, 5, 6 V in 08:00; a replay added 9 V at 08:00:30 to the database.

    The rebuilt minute (4, 5, 6, 9 V: 4 samples, mean 6.0) replaces the live one (3, mean
    5.0), so live's write when 08:01 arrives does not undo the recalculation's. C2's open
    minute is on another day, outside the periods redone: it stays as live had it.
    """
    proc = processor()
    c2_other_day = (1, DAY - 3600 * NS, 4.4, 300.0, None)
    live_rows: list[Row] = [(0, T + k * NS, 4.0 + k, 300.0, None) for k in range(3)]
    live_state, _ = proc.apply(batch(["C1", "C2"], [*live_rows, c2_other_day]), None)
    live = proc.checkpoint(live_state)
    history = [*live_rows, (0, T + 30 * NS, 9.0, 300.0, None)]
    fresh, _ = proc.flush(proc.apply(batch(["C1"], history), None)[0])
    state = proc.rebase(live, fresh, [("P1", "day", DAY)])
    _, points = proc.apply(batch(["C1"], [(0, T + 60 * NS, 4.0, 300.0, None)]), state)
    assert [(p.time_ns, p.fields["samples"]) for p in points] == [(T, 4)]
    assert points[0].fields["voltage_v_mean"] == pytest.approx((4 + 5 + 6 + 9) / 4)
    assert proc.checkpoint(state)["open"]["P1"]["C2"] == live["open"]["P1"]["C2"]


def test_a_recalculation_of_other_periods_leaves_the_live_minutes() -> None:
    proc = processor()
    live, _ = proc.apply(batch(["C1"], [(0, T, 4.0, 300.0, None)]), None)
    fresh, _ = proc.apply(
        batch(["C1"], [(0, T, 4.0, 300.0, None), (0, T + NS, 8.0, 1.0, None)]), None
    )
    assert proc.rebase(live, fresh, [("P1", "day", DAY - 86_400 * NS)]) == live
    assert proc.rebase(live, fresh, [("P2", "day", DAY)]) == live
    assert proc.rebase(live, fresh, [("P1", "day", DAY)]) == fresh
