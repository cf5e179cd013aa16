"""Grafana's time range arithmetic, as a board's panel applies it to its queries.

- ``dateMath.parse``: ``now``, then operations ``+N<unit>``, ``-N<unit>`` and ``/<unit>``
  (round to the start of the unit, or to its end where the expression is a range's "to"),
  units y M d h m s, in the board's timezone.
- ``rangeUtil.describeTextRange``: a panel's ``timeFrom`` (relative time) of ``5d`` or
  ``now-5d`` means from ``now-5d`` to ``now``; ``now/M`` ("This month so far") from the start
  of the month to now. It replaces the board's range.
- ``timeShift`` ``1d`` (valid as a relative time too) moves both ends by ``-1d``.
- The InfluxQL data source renders ``$timeFilter`` as ``time >= <from>ms and time <= <to>ms``.

The units, ``/<unit>`` for the whole period and the examples ("The day so far": ``now/d`` to
``now``): https://grafana.com/docs/grafana/v7.3/dashboards/time-range-controls/; the rest as
Grafana's applyPanelTimeOverrides (PanelTimeRange in scenes), describeTextRange and the
InfluxQL backend's renderTimeFilter do it.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

FIXED = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
FIXED["s"] = timedelta(seconds=1)
STEP = re.compile(r"([+-])(\d+)([yMdhms])|/([yMdhms])")
VALID_FROM = re.compile(r"^now([-+])(\d+)(\w)|^now/[dwMy]$")
"""What describeTextRange accepts: ``now±N<unit>…``, or a "… so far" range of its list."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse(text: str, now: datetime, *, round_up: bool) -> datetime:
    """A "now…" expression at ``now`` (timezone-aware: rounding is in its timezone)."""
    if not text.startswith("now"):
        msg = f"not a relative time: {text!r}"
        raise ValueError(msg)
    return apply(text[3:], now, round_up=round_up)


def apply(math: str, time: datetime, *, round_up: bool) -> datetime:
    """Grafana's parseDateMath: each operation in turn, left to right."""
    at = 0
    while at < len(math):
        step = STEP.match(math, at)
        if step is None:
            msg = f"bad date math {math!r} at {at}"
            raise ValueError(msg)
        sign, amount, unit, rounding = step.groups()
        if rounding:
            time = end_of(time, rounding) if round_up else start_of(time, rounding)
        else:
            time = add(time, int(amount) * (1 if sign == "+" else -1), unit)
        at = step.end()
    return time


def add(time: datetime, n: int, unit: str) -> datetime:
    """``n`` units later; months and years on the calendar, the day clamped to the month's."""
    if unit in FIXED:
        return time + n * FIXED[unit]
    months = time.year * 12 + time.month - 1 + n * (12 if unit == "y" else 1)
    year, month = divmod(months, 12)
    day = min(time.day, calendar.monthrange(year, month + 1)[1])
    return time.replace(year=year, month=month + 1, day=day)


def start_of(time: datetime, unit: str) -> datetime:
    """The first instant of the unit, as moment's startOf."""
    keep = "yMdhms".index(unit) + 1
    parts = [time.year, time.month, time.day, time.hour, time.minute, time.second]
    year, month, day, hour, minute, second = parts[:keep] + [1, 1, 0, 0, 0][keep - 1 :]
    return datetime(year, month, day, hour, minute, second, tzinfo=time.tzinfo)


def end_of(time: datetime, unit: str) -> datetime:
    """The last millisecond of the unit, as moment's endOf."""
    return add(start_of(time, unit), 1, unit) - timedelta(milliseconds=1)


def panel_range(
    board: tuple[str, str], panel: dict[str, str], now: datetime
) -> tuple[datetime, datetime]:
    """The range a panel queries: the board's (from, to), or its relative time and shift."""
    raw_from, raw_to = board
    if panel.get("timeFrom"):
        raw_from, raw_to = describe_text_range(panel["timeFrom"])
    start, end = parse(raw_from, now, round_up=False), parse(raw_to, now, round_up=True)
    if panel.get("timeShift"):
        describe_text_range(panel["timeShift"])  # refused as Grafana does when invalid
        shift = "-" + panel["timeShift"]
        start, end = apply(shift, start, round_up=False), apply(shift, end, round_up=True)
    return start, end


def describe_text_range(expr: str) -> tuple[str, str]:
    """A panel's relative time as (from, to); a "+" one is a range into the future."""
    last = not expr.startswith("+")
    if "now" not in expr:
        expr = ("now-" if last else "now") + expr
    if not VALID_FROM.match(expr):
        msg = f"invalid time override {expr!r}: Grafana would keep the board's range"
        raise ValueError(msg)
    return (expr, "now") if last else ("now", expr)


def time_filter(start: datetime, end: datetime) -> str:
    """``$timeFilter`` as Grafana's InfluxQL data source writes it (milliseconds)."""
    return f"time >= {ms(start)}ms and time <= {ms(end)}ms"


def ms(time: datetime) -> int:
    return (time - EPOCH) // timedelta(milliseconds=1)
