"""``cellmon report`` reads InfluxDB and writes one HTML file for the chosen days.

A database that refuses it or cannot be reached is an error with the reason, never an
empty report: "0 potline-days" from a wrong password reads as a plant that made nothing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.sinks.influx_v1 import InfluxV1Sink
from tests.conftest import serve
from tests.harness import ROOT, write_config
from tests.servers import InfluxV1, free_port

pytestmark = pytest.mark.integration

NS = 1_000_000_000
# Asia/Shanghai local days 2024-03-01 and 2024-03-02 start at 16:00 UTC the day before
DAY1 = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
DAY2 = DAY1 + 86_400 * NS
OUTSIDE = DAY1 - 86_400 * NS
LOGIN = f"report:{secrets.token_hex(8)}"
ONE_DAY = (
    "sec_potline,potline=P1,period=day "
    f"sec_kwh_per_t=13431.5,target_kwh_per_t=13350,baseline_kwh_per_t=13450 {DAY1}\n"
)


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxV1]:
    """InfluxDB 1.x with authentication on, with one day of one potline in ``cellmon``."""
    server = InfluxV1(tmp_path_factory.mktemp("influxd-auth"), admin=LOGIN)
    for running in serve(server):
        running.create_database("cellmon")
        InfluxV1Sink(running.url, "cellmon", LOGIN, timeout_s=10.0, gzip=False).write(
            ONE_DAY.encode()
        )
        yield running


def report(config: Path, out: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """``cellmon report`` of 2024-03-01 and 02 as a process; ``token`` is $INFLUX_TOKEN."""
    env = {**os.environ, "INFLUX_TOKEN": token} if token else None
    argv = ["report", "--config", str(config), "--from", "2024-03-01", "--to", "2024-03-02"]
    return subprocess.run(
        [sys.executable, "-m", "collector.commands.cli", *argv, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


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
    done = report(config, out)
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


def test_the_right_password_reads_the_days(tmp_path: Path, auth_influx: InfluxV1) -> None:
    """With authentication on, the v1 "user:password" of $INFLUX_TOKEN reads the day."""
    config = write_config(
        tmp_path,
        mqtt_port=1,
        influx_url=auth_influx.url,
        database="cellmon",
        token_env="INFLUX_TOKEN",
    )
    done = report(config, tmp_path / "report.html", LOGIN)
    assert done.returncode == 0, done.stderr
    assert "1 potline-days, 0 anode changes" in done.stdout
    assert "13,432" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    ("database", "token", "said"),
    [
        ("cellmon", "report:wrong", "HTTP 401: authorization failed"),
        ("cellmon", None, "HTTP 401: unable to parse authentication credentials"),
        ("nosuchdb", LOGIN, "HTTP 200: database not found: nosuchdb"),
    ],
    ids=["wrong password", "no password", "unknown database"],
)
def test_a_refusal_is_an_error_with_its_reason(
    tmp_path: Path, auth_influx: InfluxV1, database: str, token: str | None, said: str
) -> None:
    """Exit 1, InfluxDB's own words on stderr, no file: before, this was "0 potline-days"."""
    config = write_config(
        tmp_path,
        mqtt_port=1,
        influx_url=auth_influx.url,
        database=database,
        token_env="INFLUX_TOKEN",
    )
    out = tmp_path / "report.html"
    done = report(config, out, token)
    assert done.returncode == 1, done.stdout
    assert f"InfluxDB at {auth_influx.url}/query refused the query: {said}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert done.stdout == ""


def test_an_unreachable_database_is_an_error(tmp_path: Path) -> None:
    """Nothing listening: exit 1 with where it looked, not a traceback."""
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    config = write_config(tmp_path, mqtt_port=1, influx_url=url, database="cellmon")
    out = tmp_path / "report.html"
    done = report(config, out)
    assert done.returncode == 1
    assert f"cellmon report: cannot reach InfluxDB at {url}/query:" in done.stderr
    assert "Connection refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
