"""A backfill that merges two anode effects into one leaves exactly the event points of a
live run that had all the data (contract 5.2), through real Mosquitto and InfluxDB 1.x.

Cell C1 runs at 4.2 V but for an anode effect at 30 V from 10:00:00 to 10:04:30; its next
sample, 10:05:00, is back at 4.2 V. Samples come every 30 s and ``max_gap_s`` is 60. The
live run misses 10:01:30 to 10:02:30: a 120 s gap that ends the effect at its last sample
before it (10:00:00 to 10:01:00, 60 s, interrupted) and starts a second at 10:03:00 that
ends at 10:05:00 (120 s). With the missing samples there is one effect, 10:00:00 to
10:05:00: 300 s, not interrupted.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.harness import Pipeline, publish_all, replay, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
CLI = (sys.executable, "-m", "collector.commands.cli")
STEP_S = 30
day = datetime.now(ZONE).date() - timedelta(days=2)
T8 = int(datetime(day.year, day.month, day.day, 8, tzinfo=ZONE).timestamp()) * NS
STEPS = range(4 * 120)  # 08:00:00 to 11:59:30
EFFECT = range(240, 250)  # 10:00:00 to 10:04:30
MISSING = range(243, 246)  # 10:01:30, 10:02:00, 10:02:30


def at(k: int) -> int:
    return T8 + k * STEP_S * NS


def sample(cell: str, k: int) -> dict[str, object]:
    volts = 30.0 if cell == "C1" and k in EFFECT else 4.2
    return {"ts": at(k) // 1_000_000, "cell_voltage_v": volts, "line_current_ka": 300.0}


def messages(skip: range) -> list[tuple[str, bytes]]:
    return [
        (f"smelter/P1/{cell}/telemetry", json.dumps(sample(cell, k)).encode())
        for k in STEPS
        for cell in ("C1", "C2")
        if not (cell == "C1" and k in skip)
    ]


def rows(influx: InfluxV1, db: str, measurement: str) -> list[dict[str, object]]:
    """The points with the fields they hold (a column another point has is no field)."""
    found = influx.query(f"SELECT * FROM {measurement} GROUP BY *", db)
    return [{k: v for k, v in r.items() if v is not None} for r in found]


def effects(influx: InfluxV1, db: str) -> list[dict[str, object]]:
    return rows(influx, db, "anode_effect")


def ae_periods(influx: InfluxV1, db: str) -> list[dict[str, object]]:
    return rows(influx, db, "ae_potline")


def live(tmp_path: Path, broker: Mosquitto, influx: InfluxV1, db: str, skip: range) -> Pipeline:
    influx.create_database(db)
    config = write_config(tmp_path, mqtt_port=broker.port, influx_url=influx.url, database=db)
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    publish_all(broker.port, messages(skip))
    expected = 2 * len(STEPS) - len(skip)

    def written() -> bool:
        rows = influx.query("SELECT count(voltage_v) FROM cell", db)
        return bool(rows) and rows[0]["count"] == expected and bool(effects(influx, db))

    wait_for(written, 120, pipeline.new_log)
    return pipeline


def test_a_backfill_that_merges_two_effects_leaves_the_points_of_a_whole_live_run(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    whole = live(tmp_path / "whole", plant_broker, influx_v1, "whole", range(0))
    assert whole.terminate() == 0
    (one,) = effects(influx_v1, "whole")
    assert (one["cell"], one["time"], one["duration_s"]) == ("C1", at(240), 300.0)
    assert "interrupted" not in one

    pipeline = live(tmp_path / "gap", plant_broker, influx_v1, "gap", MISSING)
    before = effects(influx_v1, "gap")
    assert [(e["time"], e["duration_s"], e.get("interrupted")) for e in before] == [
        (at(240), 60.0, True),
        (at(246), 120.0, None),
    ]
    history = tmp_path / "missing.csv"
    rows = [{"potline": "P1", "cell": "C1", **sample("C1", k)} for k in MISSING]
    pd.DataFrame(rows).to_csv(history, index=False)
    config = tmp_path / "gap" / "cellmon.yaml"
    done = replay(history, config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 event points it no longer makes removed" in done.stdout, done.stdout

    wait_for(lambda: effects(influx_v1, "gap") == [one], 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    assert effects(influx_v1, "gap") == effects(influx_v1, "whole")
    assert ae_periods(influx_v1, "gap") == ae_periods(influx_v1, "whole")
