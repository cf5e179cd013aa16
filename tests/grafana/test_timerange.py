"""The test's Grafana range arithmetic, on the cases of Grafana's documentation."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.grafana.timerange import describe_text_range, panel_range, parse, time_filter

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=ZONE)
BOARD = ("now-7d", "now")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZONE)


@pytest.mark.parametrize(
    ("text", "round_up", "expected"),
    [
        ("now", False, NOW),
        ("now-7d", False, local(2026, 11, 3, 12)),
        ("now/d", False, local(2026, 11, 10)),
        ("now/d", True, local(2026, 11, 10, 23, 59, 59, 999_000)),
        ("now/M", False, local(2026, 11, 1)),
        ("now/M", True, local(2026, 11, 30, 23, 59, 59, 999_000)),
        ("now-1M/M", False, local(2026, 10, 1)),
        ("now-12M/M", False, local(2025, 11, 1)),
        ("now-1d/d", True, local(2026, 11, 9, 23, 59, 59, 999_000)),
        ("now/y", False, local(2026, 1, 1)),
        ("now+2h-30m", False, local(2026, 11, 10, 13, 30)),
    ],
)
def test_date_math_rounds_in_the_boards_timezone(
    text: str, round_up: bool, expected: datetime
) -> None:
    assert parse(text, NOW, round_up=round_up) == expected


def test_a_month_later_keeps_the_day_within_the_month() -> None:
    assert parse("now+1M", local(2026, 1, 31, 8), round_up=False) == local(2026, 2, 28, 8)


def test_a_panels_relative_time_replaces_the_boards_range() -> None:
    assert describe_text_range("now/M") == ("now/M", "now")  # "This month so far"
    assert describe_text_range("30d") == ("now-30d", "now")
    assert panel_range(BOARD, {}, NOW) == (local(2026, 11, 3, 12), NOW)
    assert panel_range(BOARD, {"timeFrom": "now/M"}, NOW) == (local(2026, 11, 1), NOW)
    assert panel_range(BOARD, {"timeFrom": "now/d"}, NOW) == (local(2026, 11, 10), NOW)


def test_a_time_shift_moves_both_ends_back() -> None:
    shifted = panel_range(BOARD, {"timeFrom": "now/d", "timeShift": "1d"}, NOW)
    assert shifted == (local(2026, 11, 9), local(2026, 11, 9, 12))


def test_an_invalid_override_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid time override"):
        describe_text_range("now/q")


def test_the_time_filter_is_inclusive_milliseconds() -> None:
    start, end = panel_range(BOARD, {"timeFrom": "now/M"}, NOW)
    assert time_filter(start, end) == "time >= 1793462400000ms and time <= 1794283200000ms"
