"""Outages are ridden out. The database: from the journal, nothing lost while it fits the
buffer, and past the bound only the oldest raw samples go, never KPI points. The broker:
reconnect, re-subscribe, carry on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

CELLS = 10
T0_MS = (int(time.time()) - 3 * 86_400) * 1000


def messages(first_step: int, steps: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"smelter/P1/C{c:02d}/telemetry",
            orjson.dumps(
                {
                    "ts": T0_MS + k * 10_000,
                    "cell_voltage_v": 4.2 + c / 100,
                    "line_current_ka": 300.0,
                }
            ),
        )
        for k in range(first_step, first_step + steps)
        for c in range(CELLS)
    ]


def count(influx: InfluxV1, measurement: str, field: str) -> int:
    try:
        rows = influx.query(f"SELECT count({field}) FROM {measurement}", "plant")
    except Exception:  # down or starting: nothing counted yet
        return -1
    return rows[0]["count"] if rows else 0


def buffered_lines(state: Path) -> int:
    with sqlite3.connect(state / "journal.sqlite") as conn:
        return int(conn.execute("SELECT total(lines) FROM outbox").fetchone()[0])


def processed(state: Path) -> bool:
    """Every inbox row is behind the worker's checkpoint: its output is in the outbox."""
    with sqlite3.connect(state / "inbox.sqlite") as conn:
        newest = conn.execute("SELECT max(seq) FROM inbox").fetchone()[0]
    with sqlite3.connect(state / "journal.sqlite") as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'position'").fetchone()
    return newest is not None and row is not None and int(row[0]) >= newest


def accepted(state: Path) -> int:
    with sqlite3.connect(state / "inbox.sqlite") as conn:
        row = conn.execute("SELECT value FROM counters WHERE name = 'accepted'").fetchone()
    return int(row[0]) if row else 0


def run_outage(
    tmp_path: Path, broker: Mosquitto, influx: InfluxV1, sink_options: str = ""
) -> Pipeline:
    """2,000 samples written, InfluxDB stopped, 3,000 more received, InfluxDB back."""
    config = write_config(
        tmp_path,
        mqtt_port=broker.port,
        influx_url=influx.url,
        database="plant",
        sink_options=sink_options,
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    publish_all(broker.port, messages(0, 200))
    wait_for(lambda: count(influx, "cell", "voltage_v") == 2000, 60, pipeline.new_log)
    influx.stop()
    publish_all(broker.port, messages(200, 300))
    state = tmp_path / "state"
    wait_for(lambda: accepted(state) == 5000, 60, pipeline.new_log)
    wait_for(lambda: "write failed" in pipeline.new_log(), 60, pipeline.new_log)
    # the worker has made its lines of all 5,000 (it waits a second between small batches
    # and checkpoints every 5 s): only then does the outage have the whole backlog to hold
    wait_for(lambda: processed(state), 60, pipeline.new_log)
    influx.start()
    return pipeline


def test_outage_within_the_buffer_loses_nothing(
    tmp_path: Path, plant_broker: Mosquitto, influx: InfluxV1
) -> None:
    pipeline = run_outage(tmp_path, plant_broker, influx)
    wait_for(lambda: count(influx, "cell", "voltage_v") == 5000, 120, pipeline.new_log)
    assert pipeline.terminate() == 0
    assert buffered_lines(tmp_path / "state") == 0
    metrics = influx.query("SELECT * FROM cellmon ORDER BY time DESC LIMIT 1", "plant")[0]
    assert metrics["write_errors"] >= 1
    assert metrics["dropped"] == 0
    rows = influx.query("SELECT voltage_v FROM cell GROUP BY cell", "plant")
    assert sorted((r["cell"], r["time"]) for r in rows) == sorted(
        (f"C{c:02d}", (T0_MS + k * 10_000) * 1_000_000) for k in range(500) for c in range(CELLS)
    )


def test_past_the_bound_raw_samples_go_first_and_kpis_stay(
    tmp_path: Path, plant_broker: Mosquitto, influx: InfluxV1
) -> None:
    # 20 KiB of buffer: far less than 3,000 raw lines, enough for the KPI lines
    pipeline = run_outage(
        tmp_path, plant_broker, influx, sink_options="  max_buffer_mib: 0.02\n  retry_max_s: 1\n"
    )
    state = tmp_path / "state"
    wait_for(lambda: buffered_lines(state) == 0, 120, pipeline.new_log)
    assert pipeline.terminate() == 0
    metrics = influx.query("SELECT * FROM cellmon ORDER BY time DESC LIMIT 1", "plant")[0]
    raw = count(influx, "cell", "voltage_v")
    assert metrics["dropped"] > 0
    assert raw + metrics["dropped"] == 5000
    # every cell's kWh/t of the shift is there, complete with all 500 samples' energy
    shift = influx.query(
        "SELECT energy_kwh, hours_covered FROM sec_cell WHERE period = 'shift' GROUP BY cell",
        "plant",
    )
    assert len({r["cell"] for r in shift}) == CELLS
    hours = sum(r["hours_covered"] for r in shift) / CELLS
    assert hours == pytest.approx(499 * 10 / 3600)


def test_broker_restart_reconnects_resubscribes_and_loses_nothing(
    tmp_path: Path, influx: InfluxV1
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=PLANT_BROKER_SETTINGS)
    broker.start()
    try:
        config = write_config(
            tmp_path, mqtt_port=broker.port, influx_url=influx.url, database="plant"
        )
        pipeline = Pipeline(config, tmp_path / "cellmon.log")
        pipeline.start()
        publish_all(broker.port, messages(0, 200))
        wait_for(lambda: count(influx, "cell", "voltage_v") == 2000, 60, pipeline.new_log)
        broker.stop()
        broker.start()
        wait_for(lambda: pipeline.new_log().count("connected to") >= 2, 60, pipeline.new_log)
        publish_all(broker.port, messages(200, 300))
        wait_for(lambda: count(influx, "cell", "voltage_v") == 5000, 60, pipeline.new_log)
        assert pipeline.terminate() == 0
    finally:
        broker.stop()


def test_a_stop_while_the_database_is_down_leaves_the_points_for_the_next_start(
    tmp_path: Path, plant_broker: Mosquitto, influx: InfluxV1
) -> None:
    config = write_config(
        tmp_path,
        mqtt_port=plant_broker.port,
        influx_url=influx.url,
        database="plant",
        sink_options="  shutdown_s: 2\n",
    )
    state = tmp_path / "state"
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    publish_all(plant_broker.port, messages(0, 20))
    wait_for(lambda: count(influx, "cell", "voltage_v") == 200, 60, pipeline.new_log)
    influx.stop()
    publish_all(plant_broker.port, messages(20, 30))
    wait_for(lambda: accepted(state) == 500, 60, pipeline.new_log)
    wait_for(lambda: "write failed" in pipeline.new_log(), 60, pipeline.new_log)
    assert pipeline.terminate() == 3
    left = buffered_lines(state)
    assert left >= 300  # at least the raw samples received while the database was down
    assert f"{left} points still buffered in {state}; they are written at the next start" in (
        pipeline.new_log()
    )
    influx.start()
    pipeline.start()
    wait_for(lambda: buffered_lines(state) == 0, 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    assert count(influx, "cell", "voltage_v") == 500
