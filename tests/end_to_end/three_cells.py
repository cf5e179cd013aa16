"""A day of three cells at known voltages and current, shared by the backfill tests.

Energy and charge of such a day are arithmetic (U·I·h, I·h), so the tests that backfill an
hour of it (a replayed file, replayed dead letters) work their KPIs out from these numbers.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tests.servers import InfluxV1

ZONE = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
CLI = (sys.executable, "-m", "collector.commands.cli")
STEP_S = 30  # within the default max_gap_s of 60
CURRENT_KA = 300.0
VOLTS = {"C1": 4.1, "C2": 4.2, "C3": 4.3}
CE = 0.925  # the default current efficiency of write_config's potline P1
FARADAY = 0.33557e-3
HOUR_10 = range(10 * 120, 11 * 120)  # the steps from 10:00:00 to 10:59:30
LAST = 86_400 // STEP_S + 1  # through 24:00:30: every cell has passed the day's end

day = datetime.now(ZONE).date() - timedelta(days=2)
if (day + timedelta(days=1)).month != day.month:
    day -= timedelta(days=1)  # the day and the next one's first samples in one month
MIDNIGHT = datetime(day.year, day.month, day.day, tzinfo=ZONE)
T0 = int(MIDNIGHT.timestamp()) * NS


def energy(cell: str, hours: float) -> float:
    """kWh of a cell at its voltage and the line current for ``hours``."""
    return VOLTS[cell] * CURRENT_KA * hours


def sec(influx: InfluxV1, db: str, cell: str, period: str, t: int) -> dict[str, float]:
    """The cell's ``sec_cell`` point of that period, or {} when there is none."""
    where = f"cell = '{cell}' AND period = '{period}' AND time = {t}"
    rows = influx.query(f"SELECT * FROM sec_cell WHERE {where}", db)
    return rows[0] if rows else {}
