"""``cellmon report`` reads InfluxDB and writes one HTML file for the chosen days."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.sinks.influx_v1 import InfluxV1Sink
from tests.harness import ROOT, write_config
from tests.servers import InfluxV1

pytestmark = pytest.mark.integration

NS = 1_000_000_000
# Asia/Shanghai local days 2024-03-01 and 2024-03-02 start at 16:00 UTC the day before
DAY1 = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
DAY2 = DAY1 + 86_400 * NS
OUTSIDE = DAY1 - 86_400 * NS


def test_report_of_two_days(tmp_path: Path, influx_v1: InfluxV1, influx_db: str) -> None:
    lines = [
        f"sec_potline,potline=P1,period=day sec_kwh_per_t=13431.5,target_kwh_per_t=13350,"
        f"baseline_kwh_per_t=13450,savings_kwh_per_t=18.5,goal_pct=18.5,"
        f"energy_saved_kwh=1234.5 {DAY1}",
        f"sec_potline,potline=P1,period=day sec_kwh_per_t=13377.25,target_kwh_per_t=13350,"
        f"baseline_kwh_per_t=13450,savings_kwh_per_t=72.75,goal_pct=72.75,"
        f"energy_saved_kwh=5432.5 {DAY2}",
        f"sec_potline,potline=P1,period=day sec_kwh_per_t=99999.5 {OUTSIDE}",
        f"anode_change,potline=P1,cell=C1,anode=3,block=590 cycle_days=30.75 {DAY1 + NS}",
        f"anode_change,potline=P1,cell=C1,anode=4,block=590 cycle_days=31.25 {DAY2 + NS}",
        f"ae_potline,potline=P1,period=day count=2i,minutes=5.5,co2e_t=12.25 {DAY1}",
    ]
    InfluxV1Sink(influx_v1.url, influx_db, None, timeout_s=10.0, gzip=True).write(
        "\n".join(lines).encode() + b"\n"
    )
    config = write_config(tmp_path, mqtt_port=1, influx_url=influx_v1.url, database=influx_db)
    out = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.commands.cli",
            "report",
            "--config",
            str(config),
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "cellmon report: 2024-03-01 to 2024-03-02" in text
    assert "13,432" in text
    assert "13,377" in text
    assert "99,999" not in text  # the day before is not reported
    assert "2024-03-01" in text
    assert "2024-03-02" in text
    assert "2 changes with a known cycle" in text
    assert "<svg" in text
    assert "12.25" in text
