"""Controller clocks end to end (contract 6.5): a cell whose clock runs 90 s behind raises
``clock_drift``, and clears it once set right, through the real Mosquitto into InfluxDB 1.x,
with the alerts on the broker.

"Arrival" is cellmon's clock when it decodes a message, so the samples are stamped at
publish time: ``ts`` = now − 90 s, then ``ts`` = now. A minute is judged once the cell's
next live sample arrives in a later minute, so the test publishes across three minutes of
the wall clock (about two minutes of waiting).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MINUTE_NS = 60 * NS
TOPIC = "smelter/P1/C7/telemetry"
ALERTS = "alerts:\n  topic: clocktest/{potline}/{cell}/{rule}\n"


class Alerts:
    """The alerts cellmon publishes, as a control-room HMI subscribed before it starts."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[str, dict]] = []
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hmi-clock-test")
        client.on_connect = lambda c, *_: c.subscribe("clocktest/#", qos=1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, orjson.loads(m.payload))
        )
        client.connect("127.0.0.1", port)
        client.loop_start()
        assert self._subscribed.wait(10)
        self.client = client

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def sample(behind_s: float) -> tuple[str, bytes]:
    """A single object (a live sample) stamped ``behind_s`` before now."""
    ts_ms = (time.time_ns() - int(behind_s * NS)) // 1_000_000
    return TOPIC, orjson.dumps({"ts": ts_ms, "cell_voltage_v": 4.2, "line_current_ka": 400.0})


def next_minute() -> int:
    """Sleep into the next minute of the wall clock (a second in); returns its start, ns."""
    start = (time.time_ns() // MINUTE_NS + 1) * MINUTE_NS
    time.sleep((start - time.time_ns()) / NS + 1.0)
    return start


def points(influx: InfluxV1, db: str, measurement: str) -> list[dict]:
    return influx.query(f'SELECT * FROM "{measurement}" WHERE "cell" = \'C7\'', db)


def test_a_clock_90_s_behind_raises_clock_drift_and_setting_it_right_clears_it(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    db = "clock_e2e"
    influx_v1.create_database(db)
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=db, extra=ALERTS
    )
    hmi = Alerts(plant_broker.port)
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    try:
        # minute M: three samples, 90 s behind (the minute must not end while they are sent)
        if time.time_ns() % MINUTE_NS > 45 * NS:
            next_minute()
        m = time.time_ns() // MINUTE_NS * MINUTE_NS
        for _ in range(3):
            publish_all(plant_broker.port, [sample(90.0)])
            time.sleep(1.0)
        # minute M + 1: one more 90 s behind (it closes M: 90 > 30 raises), then the clock
        # is set right: three samples stamped now
        assert next_minute() == m + MINUTE_NS
        publish_all(plant_broker.port, [sample(90.0)])
        for _ in range(3):
            time.sleep(1.0)
            publish_all(plant_broker.port, [sample(0.0)])

        def alarms() -> list[dict]:
            return points(influx_v1, db, "alarm")

        wait_for(lambda: len(alarms()) == 1, 60, pipeline.new_log)
        # minute M + 2: a sample closes M + 1: the median of 90, 0, 0, 0 is 0: cleared
        assert next_minute() == m + 2 * MINUTE_NS
        publish_all(plant_broker.port, [sample(0.0)])
        wait_for(lambda: len(alarms()) == 2, 60, pipeline.new_log)
        wait_for(lambda: len(hmi.received) == 2, 30, pipeline.new_log)
        assert pipeline.terminate() == 0
    finally:
        hmi.close()

    check_written(influx_v1, db, m, hmi.received)


def check_written(influx: InfluxV1, db: str, m: int, alerts: list[tuple[str, dict]]) -> None:
    """The alarm's raise at minute ``m``, its clear at ``m`` + 1, their alerts, the minutes."""
    raised, cleared = sorted(points(influx, db, "alarm"), key=lambda r: r["time"])
    for row, state, minute in ((raised, "raised", m), (cleared, "cleared", m + MINUTE_NS)):
        assert (row["time"], row["rule"], row["severity"], row["state"]) == (
            minute,
            "clock_drift",
            "warning",
            state,
        )
    # arrival − ts is 90 s plus the way through the broker (milliseconds), or that alone
    assert 90.0 <= raised["value"] < 91.0
    assert 0.0 <= cleared["value"] < 1.0
    clocks = sorted(points(influx, db, "cell_clock"), key=lambda r: r["time"])
    assert [(r["time"], r["samples"]) for r in clocks] == [
        (m, 3),
        (m + MINUTE_NS, 4),
        (m + 2 * MINUTE_NS, 1),  # written at shutdown as it stood
    ]
    assert [(topic, a["state"], a["rule"], a["ts"]) for topic, a in alerts] == [
        ("clocktest/P1/C7/clock_drift", "raised", "clock_drift", m // 1_000_000),
        ("clocktest/P1/C7/clock_drift", "cleared", "clock_drift", (m + MINUTE_NS) // 1_000_000),
    ]
    assert alerts[0][1]["value"] == raised["value"]
