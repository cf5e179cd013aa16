"""A month added up from its days' points is the month of its raw samples (contract 5.2).

Three cells at constant voltage and current through three days of a past month, a metal
tap and two anode changes, replayed into a real InfluxDB 1.x; then ``cellmon recalc`` of
the middle day alone, which redoes that day from raw samples and builds the month from it
and the two other days' stored points. Every expected value is worked out here by hand:
at constant U and I over h hours, energy = U·I·h and charge = I·h.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.collector.commands.test_recalc import cli
from tests.harness import write_config
from tests.servers import InfluxV1

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
FARADAY = 0.33557e-3
CE = 0.925  # write_config's potline P1
CURRENT_KA = 320.0
VOLTS = {"C1": 4.0, "C2": 4.2, "C3": 4.4}
STEP_S = 60
DAYS = 3
HOURS = 24.0 * DAYS  # every interval of the three days, none after the last sample
TAP_KG = 1000.0

first_of_this_month = datetime.now(ZONE).date().replace(day=1)
day1 = (first_of_this_month - timedelta(days=1)).replace(day=10)  # last month: complete
MIDNIGHT = datetime(day1.year, day1.month, day1.day, tzinfo=ZONE)
T0 = int(MIDNIGHT.timestamp()) * NS
MONTH = int(MIDNIGHT.replace(day=1).timestamp()) * NS
MONTH_DAYS = (first_of_this_month - day1.replace(day=1)).days


def rows() -> list[dict[str, object]]:
    """Samples every minute from day 1 00:00 through day 3 24:00; a tap; two changes."""
    out: list[dict[str, object]] = [
        {
            "potline": "P1",
            "cell": cell,
            "ts": (T0 + k * STEP_S * NS) // 1_000_000,
            "cell_voltage_v": volts,
            "line_current_ka": CURRENT_KA,
        }
        for k in range(DAYS * 86_400 // STEP_S + 1)
        for cell, volts in VOLTS.items()
    ]
    hour = 3600 * NS
    out.append({"potline": "P1", "cell": "C2", "ts": (T0 + 30 * hour) // 1_000_000,
                "type": "metal_tap", "metal_kg": TAP_KG})  # fmt: skip
    for t in (T0 + 10 * hour, T0 + 58 * hour):  # days 1 and 3: a cycle of 2 days
        out.append({"potline": "P1", "cell": "C1", "ts": (t + 30 * NS) // 1_000_000,
                    "type": "anode_change", "anode": 1, "block": "590"})  # fmt: skip
    return out


def month_point(influx: InfluxV1, db: str, m: str, cell: str | None = None) -> dict[str, object]:
    where = f"period = 'month' AND time = {MONTH}" + (f" AND cell = '{cell}'" if cell else "")
    (row,) = influx.query(f"SELECT * FROM {m} WHERE {where}", db)
    return row


def check_month(influx: InfluxV1, db: str) -> None:
    """The month's points as the three days' raw samples make them, by hand."""
    charge = CURRENT_KA * HOURS
    for cell, volts in VOLTS.items():
        point = month_point(influx, db, "sec_cell", cell)
        assert point["energy_kwh"] == pytest.approx(volts * CURRENT_KA * HOURS, rel=1e-9)
        assert point["charge_kah"] == pytest.approx(charge, rel=1e-9)
        assert point["hours_covered"] == pytest.approx(HOURS, rel=1e-9)
        assert point["aluminium_t"] == pytest.approx(FARADAY * charge * CE, rel=1e-9)
        assert point["sec_kwh_per_t"] == pytest.approx(volts / (FARADAY * CE), rel=1e-9)
        assert point["complete"] is True
    tapped = month_point(influx, db, "sec_cell", "C2")
    assert tapped["metal_t"] == pytest.approx(TAP_KG / 1000, rel=1e-9)
    assert tapped["ce_measured_pct"] == pytest.approx(
        100 * TAP_KG / (FARADAY * 1000 * charge), rel=1e-9
    )
    potline = month_point(influx, db, "sec_potline")
    energy = sum(VOLTS.values()) * CURRENT_KA * HOURS
    assert potline["energy_kwh"] == pytest.approx(energy, rel=1e-9)
    assert potline["sec_kwh_per_t"] == pytest.approx(
        energy / (FARADAY * 3 * charge * CE), rel=1e-9
    )  # a ratio of the sums, not a mean of the cells' ratios
    assert potline["hours_covered"] == pytest.approx(HOURS, rel=1e-9)
    assert potline["cells"] == 3
    ae = month_point(influx, db, "ae_potline")
    assert ae["count"] == 0
    assert ae["aef_per_cell_day"] == 0.0  # present: three cells reported, 3 × month days
    anodes = month_point(influx, db, "anode_potline")
    assert anodes["changes"] == 2
    assert anodes["cycles_known"] == 1
    assert anodes["mean_cycle_days"] == pytest.approx(2.0, rel=1e-9)
    assert anodes["target_block_share_pct"] == 100.0


def test_a_month_from_its_days_sums_is_the_month_of_its_raw_samples(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(tmp_path, mqtt_port=1, influx_url=influx_v1.url, database=influx_db)
    csv = tmp_path / "days.csv"
    pd.DataFrame(rows()).to_csv(csv, index=False)
    done = cli("replay", str(csv), "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    check_month(influx_v1, influx_db)
    assert MONTH_DAYS >= 28

    day2 = str(day1 + timedelta(days=1))
    done = cli("recalc", "--from", day2, "--to", day2, "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 day, 1 month, 3 shifts" in done.stdout
    check_month(influx_v1, influx_db)  # days 1 and 3 read back, day 2 redone from raw
