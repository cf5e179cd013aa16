"""Alarms end to end: a hand-made stream through the real Mosquitto into InfluxDB 1.x.

Three cells of P1 report every 10 s for five minutes. Every transition below is worked
out by hand from the stream, with the rules' own definitions (docs/rules.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.harness import DEFAULT_RULES, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

RULES = (
    DEFAULT_RULES
    + """\
alarms:
  - name: high_voltage
    field: cell_voltage_v
    above: 4.5
    hold_s: 60
  - name: low_voltage
    field: cell_voltage_v
    below: 3.8
  - name: bath_temperature
    field: bath_temp_c
    outside: [940, 975]
  - name: no_data
    stale_s: 60
    severity: critical
"""
)
STEPS = range(0, 300, 10)  # seconds after the start


def c1(t: int) -> dict:
    """Above 4.5 V from 50 s to 150 s; one sample below 3.8 V at 250 s."""
    volts = 4.7 if 50 <= t <= 150 else 3.7 if t == 250 else 4.2
    return {"cell_voltage_v": volts}


def c2(t: int) -> dict:
    """Above 4.5 V for 40 s only (100 to 130 s); the bath at 980 °C at 200 s, 970 at 210 s."""
    bath = {200: 980.0, 210: 970.0}.get(t, 960.0)
    return {"cell_voltage_v": 4.6 if 100 <= t <= 130 else 4.2, "bath_temp_c": bath}


def c3(t: int) -> dict | None:
    """Silent from 110 s to 240 s: its last sample before is at 100 s, the next at 250 s."""
    return None if 110 <= t <= 240 else {"cell_voltage_v": 4.2}


def test_each_kind_of_alarm_raised_and_cleared(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    db = "alarms_e2e"
    influx_v1.create_database(db)
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=db, rules=RULES
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    t0 = (time.time_ns() // 1_000_000_000 - 3600) // 10 * 10  # s, an hour ago
    messages = []
    for t in STEPS:  # arrival order is time order, cell by cell within a step
        for cell, values in (("C1", c1(t)), ("C2", c2(t)), ("C3", c3(t))):
            if values is not None:
                body = {"ts": (t0 + t) * 1000, "line_current_ka": 400.0, **values}
                messages.append((f"smelter/P1/{cell}/telemetry", orjson.dumps(body)))
    publish_all(plant_broker.port, messages)
    wait_for(lambda: count(influx_v1, db) == len(messages), 60, pipeline.new_log)
    assert pipeline.terminate() == 0

    rows = influx_v1.query('SELECT * FROM "alarm" GROUP BY *', db)
    got = sorted(
        (
            (
                r["time"] // 1_000_000_000 - t0,
                r["cell"],
                r["rule"],
                r["severity"],
                r["state"],
                r["value"],
            )
            for r in rows
        ),
        key=lambda x: (x[0], x[1], x[2]),
    )
    assert got == [
        # C1 above 4.5 V since 50 s: held 60 s at 110 s; 4.2 V at 160 s clears it
        (110, "C1", "high_voltage", "warning", "raised", 4.7),
        (160, "C1", "high_voltage", "warning", "cleared", 4.2),
        # C3's last sample at 100 s; the potline reaches 160 s: silent for 60 s
        (160, "C3", "no_data", "critical", "raised", 60.0),
        # 980 °C is outside [940, 975]; 970 is back inside
        (200, "C2", "bath_temperature", "warning", "raised", 980.0),
        (210, "C2", "bath_temperature", "warning", "cleared", 970.0),
        # below 3.8 V with no hold: raised at once, cleared at the next sample
        (250, "C1", "low_voltage", "warning", "raised", 3.7),
        # C3 speaks again at 250 s after 150 s of silence
        (250, "C3", "no_data", "critical", "cleared", 150.0),
        (260, "C1", "low_voltage", "warning", "cleared", 4.2),
        # C2's 40 s above 4.5 V never reached the 60 s hold: nothing
    ]


def count(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return rows[0]["count"] if rows else 0
