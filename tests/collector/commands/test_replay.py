"""``cellmon replay`` of hand-made files into a real InfluxDB 1.x."""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from collector.source.deadletter import read_dead_letters
from tests import harness
from tests.harness import DEFAULT_RULES, write_config
from tests.servers import InfluxV1

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
day = datetime.now(ZONE).date() - timedelta(days=5)
SHIFT_START = datetime(day.year, day.month, day.day, tzinfo=ZONE)  # local 00:00
T0_MS = int(SHIFT_START.timestamp()) * 1000
STEPS = 8 * 360 + 1  # 00:00:00 to 08:00:00 every 10 s, then one more to close the shift


def frame() -> pd.DataFrame:
    rows = [
        {
            "potline": "P1",
            "cell": "C1",
            "ts": T0_MS + k * 10_000,
            "cell_voltage_v": 4.2,
            "line_current_ka": 300.0,
            "bath_temp_c": 955.5,
        }
        for k in range(STEPS + 1)
    ]
    rows.append(dict(rows[5]))  # a duplicate
    rows.append({**rows[6], "ts": T0_MS + 7, "cell_voltage_v": 250.0})  # out of bounds
    rows.append(
        {
            "potline": "P1",
            "cell": "C1",
            "ts": T0_MS + 3_600_000,
            "type": "metal_tap",
            "metal_kg": 1500.0,
        }
    )
    rows.append(
        {
            "potline": "P1",
            "cell": "C1",
            "ts": T0_MS + 7_200_000,
            "type": "anode_change",
            "anode": 12,
            "block": "590",
        }
    )
    return pd.DataFrame(rows)


def replay(
    path: Path, config: Path, state: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    return harness.replay(path, config, "--state-dir", str(state), *options)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_replay_writes_the_same_points_as_live_would(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str, suffix: str
) -> None:
    path = tmp_path / f"history.{suffix}"
    df = frame()
    df.to_csv(path, index=False) if suffix == "csv" else df.to_parquet(path, index=False)
    config = write_config(
        tmp_path / "cfg", mqtt_port=1, influx_url=influx_v1.url, database=influx_db
    )
    state = tmp_path / "state"
    done = replay(path, config, state)
    assert done.returncode == 0, done.stderr

    cells = influx_v1.query("SELECT count(voltage_v) FROM cell", influx_db)
    assert cells[0]["count"] == STEPS + 1
    shift = influx_v1.query("SELECT * FROM sec_cell WHERE period = 'shift'", influx_db)
    first = next(r for r in shift if r["time"] == T0_MS * 1_000_000)
    assert first["energy_kwh"] == pytest.approx(4.2 * 300 * 8, rel=1e-9)
    assert first["aluminium_t"] == pytest.approx(0.33557e-3 * 300 * 8 * 0.925, rel=1e-9)
    assert first["complete"] is True
    taps = influx_v1.query("SELECT metal_kg FROM metal_tap", influx_db)
    assert [r["metal_kg"] for r in taps] == [1500.0]
    changes = influx_v1.query("SELECT * FROM cell_event WHERE type = 'anode_change'", influx_db)
    assert [(r["anode"], r["block"]) for r in changes] == [(12.0, "590")]
    letters = read_dead_letters(state / "deadletter.jsonl")
    assert [d["reason"] for d in letters] == ["out_of_bounds"]
    assert letters[0]["topic"].startswith(f"replay:history.{suffix}:")
    assert "duplicates 1" in done.stdout

    again = replay(path, config, state)  # the same file again changes nothing
    assert again.returncode == 0, again.stderr
    assert f"accepted 0, rejected 1 (out_of_bounds 1), duplicates {STEPS + 4}" in again.stdout
    shift_again = influx_v1.query("SELECT * FROM sec_cell WHERE period = 'shift'", influx_db)
    assert shift_again == shift


def test_replayed_alarms_are_written_and_page_nobody(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    path = tmp_path / "history.csv"
    frame().to_csv(path, index=False)
    config = write_config(
        tmp_path / "cfg",
        mqtt_port=1,
        influx_url=influx_v1.url,
        database=influx_db,
        rules=DEFAULT_RULES + "alarms:\n  - {name: hot, field: cell_voltage_v, above: 4.0}\n",
        extra="alerts:\n  topic: cellmon/alarms/{potline}/{cell}/{rule}\n",
    )
    state = tmp_path / "state"
    done = replay(path, config, state)
    assert done.returncode == 0, done.stderr
    # 4.2 V from the first sample: raised there, and never cleared
    rows = influx_v1.query("SELECT * FROM alarm", influx_db)
    assert [(r["time"], r["state"], r["value"]) for r in rows] == [
        (T0_MS * 1_000_000, "raised", 4.2)
    ]
    with sqlite3.connect(state / "journal.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (0,)


def test_replay_checks_ids_as_topic_levels_would(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    good = {"ts": T0_MS, "cell_voltage_v": 4.2, "line_current_ka": 300.0}
    rows = [
        {"potline": "P1", "cell": "C1", **good},
        {"potline": "P 1", "cell": "C1", **good},  # a space: not an id
        {"potline": "P1", "cell": "C1/x", **good},  # a topic separator
        {"cell": "C1", **good},  # no potline at all
        {"potline": "P9", "cell": "C1", **good},  # an id, of a potline not configured
    ]
    path = tmp_path / "ids.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    config = write_config(
        tmp_path / "cfg", mqtt_port=1, influx_url=influx_v1.url, database=influx_db
    )
    state = tmp_path / "state"
    done = replay(path, config, state)
    assert done.returncode == 0, done.stderr
    assert "rejected 3 (bad_id 3)" in done.stdout
    assert "of potlines not in the config 1" in done.stdout
    letters = read_dead_letters(state / "deadletter.jsonl")
    assert [d["reason"] for d in letters] == ["bad_id"] * 3
    assert "'P 1' is not an id" in letters[0]["detail"]
    series = influx_v1.query("SELECT count(voltage_v) FROM cell GROUP BY *", influx_db)
    assert [(r["potline"], r["cell"], r["count"]) for r in series] == [("P1", "C1", 1)]


HISTORIAN_RULES = """\
inputs:
  - name: historian
    topic: "plant/{potline}/{cell}/data"
    kind: telemetry
    fields:
      ts: {key: t, unit: s}
      cell_voltage_v: {key: U_mV, unit: mV}
      line_current_ka: {key: I_A, unit: A}
"""


def test_replay_reads_a_historian_layout_through_the_named_input(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    # an hour of C7 every 10 s in the historian's layout: epoch seconds, mV and A
    t0_s = T0_MS // 1000
    rows = [
        {"potline": "P1", "cell": "C7", "t": t0_s + 10 * k, "U_mV": 4123, "I_A": 301500}
        for k in range(361)
    ]
    path = tmp_path / "historian.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    config = write_config(
        tmp_path / "cfg",
        mqtt_port=1,
        influx_url=influx_v1.url,
        database=influx_db,
        rules=HISTORIAN_RULES,
    )
    done = replay(path, config, tmp_path / "state", "--input", "historian")
    assert done.returncode == 0, done.stderr
    raw = influx_v1.query("SELECT * FROM cell", influx_db)
    assert {(r["voltage_v"], r["current_ka"]) for r in raw} == {(4.123, 301.5)}
    assert [r["time"] for r in raw[:2]] == [T0_MS * 1_000_000, (T0_MS + 10_000) * 1_000_000]
    shift = influx_v1.query("SELECT * FROM sec_cell WHERE period = 'shift'", influx_db)
    assert shift[0]["energy_kwh"] == pytest.approx(4.123 * 301.5 * 1.0, rel=1e-9)

    unknown = replay(path, config, tmp_path / "state", "--input", "nope")
    assert unknown.returncode == 2
    assert "no input 'nope'" in unknown.stderr
