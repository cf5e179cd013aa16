"""``cellmon recalc`` against a real InfluxDB 1.x, with no instance running.

The raw data is put in place by ``cellmon replay`` of a hand-made day: constant voltage and
current, so every KPI is worked out by hand (energy = U·I·h, aluminium = 0.33557e-3 · I · h
· CE).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.harness import ROOT, write_config
from tests.servers import InfluxV1

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
FARADAY = 0.33557e-3
day = datetime.now(ZONE).date() - timedelta(days=3)
MIDNIGHT = datetime(day.year, day.month, day.day, tzinfo=ZONE)
T0 = int(MIDNIGHT.timestamp()) * NS
STEPS = 86_400 // 60 + 1  # every minute through 24:00, so the day is complete
TWO_POTLINES = """\
    - id: P2
      baseline_sec_kwh_per_t: 13450
shards:
  - {name: east, potlines: [P1]}
  - {name: west, potlines: [P2]}
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.commands.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def history(path: Path, potlines: tuple[str, ...] = ("P1",)) -> Path:
    rows = [
        {
            "potline": p,
            "cell": "C1",
            "ts": (T0 + k * 60 * NS) // 1_000_000,
            "cell_voltage_v": 4.0,
            "line_current_ka": 320.0,
        }
        for p in potlines
        for k in range(STEPS)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def day_point(influx: InfluxV1, db: str, potline: str) -> dict[str, float]:
    where = f"potline = '{potline}' AND period = 'day' AND time = {T0}"
    return influx.query(f"SELECT * FROM sec_cell WHERE {where}", db)[0]


def test_a_corrected_current_efficiency_reaches_points_already_written(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(tmp_path, mqtt_port=1, influx_url=influx_v1.url, database=influx_db)
    done = cli("replay", str(history(tmp_path / "day.csv")), "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stderr
    assert day_point(influx_v1, influx_db, "P1")["aluminium_t"] == pytest.approx(
        FARADAY * 320 * 24 * 0.925, rel=1e-9
    )

    config = write_config(
        tmp_path,
        mqtt_port=1,
        influx_url=influx_v1.url,
        database=influx_db,
        extra="      current_efficiency: 0.95\n",  # a key of potline P1
    )
    day_s = day.isoformat()
    done = cli("recalc", "--from", day_s, "--to", day_s, "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "rewrote P1: 1 day, 1 month, 3 shifts" in done.stdout
    point = day_point(influx_v1, influx_db, "P1")
    assert point["energy_kwh"] == pytest.approx(4.0 * 320 * 24, rel=1e-9)
    assert point["aluminium_t"] == pytest.approx(FARADAY * 320 * 24 * 0.95, rel=1e-9)
    assert point["sec_kwh_per_t"] == pytest.approx(4.0 / (FARADAY * 0.95), rel=1e-9)
    assert point["complete"] is True


def test_each_shard_rewrites_its_own_potlines(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(
        tmp_path, mqtt_port=1, influx_url=influx_v1.url, database=influx_db, extra=TWO_POTLINES
    )
    path = history(tmp_path / "day.csv", ("P1", "P2"))
    done = cli("replay", str(path), "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "rewrote P1" in done.stdout
    assert "rewrote P2" in done.stdout
    for potline in ("P1", "P2"):
        assert day_point(influx_v1, influx_db, potline)["energy_kwh"] == pytest.approx(
            4.0 * 320 * 24, rel=1e-9
        )
    # each request went to the journal of the shard that owns the potline
    assert (tmp_path / "state" / "east" / "journal.sqlite").exists()
    assert (tmp_path / "state" / "west" / "journal.sqlite").exists()


def test_a_database_that_refuses_or_is_not_there_fails_the_command(tmp_path: Path) -> None:
    day_s = day.isoformat()
    with InfluxV1(tmp_path / "influx", admin="admin:right") as influx:
        influx.create_database("cellmon")
        config = write_config(
            tmp_path / "cfg",
            mqtt_port=1,
            influx_url=influx.url,
            database="cellmon",
            sink_options="  shutdown_s: 1\n",  # the self-metrics the run leaves are not waited for
        )
        config.write_text(
            config.read_text().replace("token_env: null", "token_env: CELLMON_TEST_TOKEN")
        )
        args = ("recalc", "--from", day_s, "--to", day_s, "--config", str(config), "--quiet")
        refused = cli(*args, env={"CELLMON_TEST_TOKEN": "admin:wrong"})
    assert refused.returncode == 1
    assert "recalculation failed" in refused.stderr
    assert "HTTP 401" in refused.stderr
    assert "wrong" not in refused.stderr  # the secret is never printed

    gone = cli(*args, env={"CELLMON_TEST_TOKEN": "admin:right"})  # the server has stopped
    assert gone.returncode == 1
    assert "cannot reach" in gone.stderr


def test_a_potline_not_configured_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, mqtt_port=1, influx_url="http://127.0.0.1:1", database="x")
    day_s = day.isoformat()
    done = cli(
        *("recalc", "--from", day_s, "--to", day_s, "--potline", "P7", "--config", str(config))
    )
    assert done.returncode == 2
    assert "not potlines of" in done.stderr
    assert "P7" in done.stderr


def test_a_tap_cycle_is_rewritten_from_the_previous_tap_before_the_days(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    """Replayed two days with a tap on each; then only the second day recalculated: its
    cycle began on the first, whose samples of that cell are read back (contract 6.4)."""
    first = T0 - 86_400 * NS
    rows: list[dict[str, object]] = [
        {"potline": "P1", "cell": "C1", "ts": (first + k * 60 * NS) // 1_000_000}
        | {"cell_voltage_v": 4.0, "line_current_ka": 320.0}
        for k in range(2 * STEPS - 1)
    ]
    taps = [(first + 12 * 3600 * NS, 900.0), (T0 + 20 * 3600 * NS, 3400.0)]  # 32 h apart
    rows += [
        {"potline": "P1", "cell": "C1", "ts": t // 1_000_000, "type": "metal_tap", "metal_kg": kg}
        for t, kg in taps
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "days.csv", index=False)
    config = write_config(tmp_path, mqtt_port=1, influx_url=influx_v1.url, database=influx_db)
    done = cli("replay", str(tmp_path / "days.csv"), "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stderr

    def cycle() -> dict[str, float]:
        (point,) = influx_v1.query("SELECT * FROM tap_cycle", influx_db)
        return point

    expected = 3400.0 / (0.33557 * 320 * 32)  # 320 kA for 32 h: 10,240 kA·h
    assert cycle()["charge_kah"] == pytest.approx(320 * 32, rel=1e-9)
    assert cycle()["ce"] == pytest.approx(expected, rel=1e-9)
    influx_v1.query("DROP MEASUREMENT tap_cycle", influx_db)
    assert influx_v1.query("SELECT * FROM tap_cycle", influx_db) == []
    day_s = day.isoformat()
    done = cli("recalc", "--from", day_s, "--to", day_s, "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stderr
    assert cycle()["charge_kah"] == pytest.approx(320 * 32, rel=1e-9)
    assert cycle()["hours_covered"] == pytest.approx(32.0, rel=1e-9)
    assert cycle()["ce"] == pytest.approx(expected, rel=1e-9)
