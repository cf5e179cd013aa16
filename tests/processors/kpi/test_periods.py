from datetime import UTC, datetime, time

import numpy as np
import pytest

from processors.kpi.periods import Calendar, period_index

NS = 1_000_000_000
SHIFTS = (time(0), time(8), time(16))


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


@pytest.mark.parametrize(
    ("zone", "kind", "at", "start", "end"),
    [
        # Shanghai is UTC+8: local 2024-03-01 00:00 is 2024-02-29 16:00 UTC
        ("Asia/Shanghai", "day", utc(2024, 3, 1, 3), utc(2024, 2, 29, 16), utc(2024, 3, 1, 16)),
        ("Asia/Shanghai", "shift", utc(2024, 3, 1, 3), utc(2024, 3, 1, 0), utc(2024, 3, 1, 8)),
        ("Asia/Shanghai", "month", utc(2024, 3, 1, 3), utc(2024, 2, 29, 16), utc(2024, 3, 31, 16)),
        # Berlin, 2024-03-31: clocks go forward at 02:00 CET, a 23-hour day
        ("Europe/Berlin", "day", utc(2024, 3, 31, 12), utc(2024, 3, 30, 23), utc(2024, 3, 31, 22)),
        # its first shift, 00:00 CET to 08:00 CEST, lasts 7 hours
        ("Europe/Berlin", "shift", utc(2024, 3, 31, 1), utc(2024, 3, 30, 23), utc(2024, 3, 31, 6)),
        # Berlin, 2024-10-27: back at 03:00 CEST, a 25-hour day
        (
            "Europe/Berlin",
            "day",
            utc(2024, 10, 27, 12),
            utc(2024, 10, 26, 22),
            utc(2024, 10, 27, 23),
        ),
        # a year's last month
        ("Europe/Berlin", "month", utc(2024, 12, 15), utc(2024, 11, 30, 23), utc(2024, 12, 31, 23)),
    ],
    ids=["day", "shift", "month", "23h-day", "7h-shift", "25h-day", "december"],
)
def test_period_of_an_instant(zone: str, kind: str, at: int, start: int, end: int) -> None:
    starts = Calendar(zone, SHIFTS).starts(kind, at, at)
    k = int(period_index(starts, np.array([at]))[0])
    assert (int(starts[k]), int(starts[k + 1])) == (start, end)


def test_a_boundary_instant_opens_one_period_and_closes_the_other() -> None:
    cal = Calendar("Asia/Shanghai", SHIFTS)
    boundary = utc(2024, 3, 1, 0)  # local 08:00
    starts = cal.starts("shift", boundary, boundary)
    opens = int(period_index(starts, np.array([boundary]))[0])
    closes = int(period_index(starts, np.array([boundary]), end=True)[0])
    assert int(starts[opens]) == boundary
    assert int(starts[closes]) == utc(2024, 2, 29, 16)
