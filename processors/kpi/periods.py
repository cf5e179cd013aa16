"""Shifts, days and months in the plant's time zone, as UTC nanosecond boundaries.

Boundaries are computed from local calendar dates and wall-clock times with zoneinfo, so a
day with a daylight-saving change is 23 or 25 hours long, as the plant's clock says, and
a replay of last month cuts its periods exactly where the live run did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

KINDS = ("shift", "day", "month")
NS = 1_000_000_000
_MIDNIGHT = time(0, 0)


@dataclass(frozen=True)
class Calendar:
    """The plant's periods: ``shifts`` are the local start times of the shifts."""

    timezone: str
    shifts: tuple[time, ...]
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))

    def starts(self, kind: str, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Sorted starts of every period of ``kind`` that overlaps [t0, t1], and the next one.

        The first start is at or before ``t0``; the last is after ``t1``, so a period index
        found with ``searchsorted`` always has an end.
        """
        d0 = self._local_date(t0_ns) - timedelta(days=1)
        d1 = self._local_date(t1_ns) + timedelta(days=1)
        return _starts(self, kind, d0, d1)

    def _local_date(self, t_ns: int) -> date:
        return datetime.fromtimestamp(t_ns / NS, self._zone).date()

    def local_instant(self, d: date, t: time) -> int:
        """UTC nanoseconds of a local date and wall-clock time.

        A time skipped by a DST change maps to the same instant as the hour after it.
        """
        return int(datetime.combine(d, t, tzinfo=self._zone).timestamp()) * NS


@lru_cache(maxsize=4096)
def _starts(cal: Calendar, kind: str, d0: date, d1: date) -> np.ndarray:
    days = [d0 + timedelta(days=k) for k in range((d1 - d0).days + 2)]
    if kind == "shift":
        instants = [cal.local_instant(d, t) for d in days for t in cal.shifts]
    elif kind == "day":
        instants = [cal.local_instant(d, _MIDNIGHT) for d in days]
    elif kind == "month":
        months = (d1.year - d0.year) * 12 + d1.month - d0.month + 2
        instants = [cal.local_instant(_first_of_month(d0, k), _MIDNIGHT) for k in range(months)]
    else:
        msg = f"unknown period kind {kind!r}"
        raise ValueError(msg)
    return np.unique(np.array(instants, dtype=np.int64))


def _first_of_month(d: date, months_ahead: int) -> date:
    month = d.month - 1 + months_ahead
    return date(d.year + month // 12, month % 12 + 1, 1)


def period_index(
    starts: np.ndarray, t_ns: np.ndarray | Sequence[int], *, end: bool = False
) -> np.ndarray:
    """Index in ``starts`` of the period holding each time.

    With ``end``, a time exactly on a boundary belongs to the period it closes (the end of
    an interval), otherwise to the period it opens.
    """
    return np.searchsorted(starts, np.asarray(t_ns), side="left" if end else "right") - 1
