"""The settling after an anode change (contract 6.3) over real Mosquitto and InfluxDB 1.x.

Across a SIGKILL: the samples before the change are published, checkpointed and cellmon
killed; a new cellmon gets the samples after it and then, late, the change event with its
crew. By a replay (contract 5.2): the live run has the samples, the change comes in a file.
Both give the point worked out by hand from the trace.

The trace (a sample every 10 s): 4.10 V for 35 minutes up to the change at c:00:30, then
minute means 4.40, 4.30, 4.20 and 4.12 from minute 4 on: the level is 4.10 V, minutes 4 …
13 are the first 10 running within 50 mV, so ``settle_min`` = 4 and ``peak_excess_mv`` =
300 (minute 1).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
import pytest

from tests.harness import Pipeline, publish_all, replay, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MIN = 60 * NS
ZONE = ZoneInfo("Asia/Shanghai")  # write_config's plant timezone
C = (time.time_ns() - 3 * 3600 * NS) // MIN * MIN  # the change's minute, 3 hours ago
CHANGE = C + 30 * NS
AFTER = [4.40, 4.30, 4.20]
CLI = (sys.executable, "-m", "collector.commands.cli")


def volts(t: int) -> float:
    k = (t - C) // MIN
    if t < CHANGE:
        return 4.10
    if k == 0:
        return 4.50
    return AFTER[k - 1] if k <= len(AFTER) else 4.12


def telemetry(t0: int, t1: int) -> list[tuple[str, bytes]]:
    """Samples of P1/C1 in [t0, t1), 60 to a message (a controller's array)."""
    objects = [
        {"ts": t // 1_000_000, "cell_voltage_v": volts(t), "line_current_ka": 300.0}
        for t in range(t0, t1, 10 * NS)
    ]
    return [
        ("smelter/P1/C1/telemetry", orjson.dumps(objects[k : k + 60]))
        for k in range(0, len(objects), 60)
    ]


def settle_state(state: Path) -> dict[str, Any] | None:
    """The anode_settle processor's last checkpoint, read beside the running pipeline."""
    uri = f"file:{state / 'journal.sqlite'}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            row = conn.execute("SELECT body FROM state WHERE name = 'anode_settle'").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return orjson.loads(row[0]) if row else None


def checkpointed_up_to(state: Path, minute: int) -> bool:
    """Whether the checkpoint holds C1's samples up to ``minute`` (its open minute)."""
    data = settle_state(state)
    if not data or not data["ring"]["cells"]:
        return False
    return bool(data["ring"]["open_minute"][0] >= minute)


def test_a_late_change_across_a_sigkill_settles_as_worked_out(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=influx_db
    )
    state = tmp_path / "state"
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    publish_all(plant_broker.port, telemetry(C - 35 * MIN, CHANGE))
    wait_for(lambda: checkpointed_up_to(state, C // MIN), 60, pipeline.new_log)
    assert pipeline.proc is not None
    os.killpg(pipeline.proc.pid, signal.SIGKILL)  # MQTT process and worker at once
    pipeline.proc.wait(30)

    pipeline.start()
    publish_all(plant_broker.port, telemetry(CHANGE, C + 20 * MIN))
    change = {"ts": CHANGE // 1_000_000, "type": "anode_change", "anode": 7, "block": "590"}
    publish_all(plant_broker.port, [("smelter/P1/C1/event", orjson.dumps(change | {"crew": "A"}))])

    wait_for(lambda: settled(influx_v1, influx_db), 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    assert_settled_as_worked_out(influx_v1, influx_db, crew="A")


def test_a_change_replayed_after_its_samples_settles_as_worked_out(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=influx_db
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    published = telemetry(C - 35 * MIN, C + 20 * MIN)
    publish_all(plant_broker.port, published)

    def stored() -> bool:
        rows = influx_v1.query("SELECT count(voltage_v) FROM cell", influx_db)
        return bool(rows) and rows[0]["count"] == 55 * 6

    wait_for(stored, 60, pipeline.new_log)
    history = tmp_path / "changes.csv"
    row = {"potline": "P1", "cell": "C1", "ts": CHANGE // 1_000_000, "type": "anode_change"}
    pd.DataFrame([row | {"anode": 7, "block": "590", "crew": "7"}]).to_csv(history, index=False)
    for _ in range(2):  # the second replay changes nothing
        done = replay(history, config)
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: settled(influx_v1, influx_db), 60, pipeline.new_log)
        assert_settled_as_worked_out(influx_v1, influx_db, crew="7")
    assert pipeline.terminate() == 0


def settled(influx: InfluxV1, db: str) -> list[dict[str, Any]]:
    return influx.query("SELECT * FROM anode_change WHERE settle_min > 0", db)


def assert_settled_as_worked_out(influx_v1: InfluxV1, influx_db: str, crew: str) -> None:
    """The change's point and its month, as the module's docstring works them out."""
    (row,) = influx_v1.query("SELECT * FROM anode_change", influx_db)
    assert row["time"] == CHANGE
    assert (row["cell"], row["anode"], row["block"]) == ("C1", "7", "590")
    assert row["settle_min"] == 4
    assert row["peak_excess_mv"] == pytest.approx(300.0, abs=1e-6)
    assert row["settled"] is True
    assert row["crew"] == crew
    assert row["target_days"] == 31.0  # the cycle's fields beside them

    local = datetime.fromtimestamp(CHANGE / NS, ZONE)
    month = int(local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
    (month_row,) = influx_v1.query("SELECT * FROM anode_settle", influx_db)
    assert month_row["time"] == month * NS
    assert (month_row["potline"], month_row["cell"]) == ("P1", "C1")
    assert month_row["changes"] == 1
    assert month_row["settle_min_mean"] == 4.0
    assert month_row["settle_min_max"] == 4
    assert month_row["unsettled"] == 0
