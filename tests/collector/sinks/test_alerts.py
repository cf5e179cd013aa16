"""Alarm transitions published over MQTT: format, and end to end through real servers."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from uuid import uuid4

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.journal import store as journal
from collector.journal.outbox import AlertQueue
from collector.sinks.alerts import AlertFormat, AlertPublisher
from collector.source.mqtt_client import Connection
from processors.model import Point
from tests.harness import DEFAULT_RULES, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

NS = 1_000_000_000


def test_alert_topic_and_payload() -> None:
    tags = (("potline", "P1"), ("cell", "C7"), ("rule", "high_voltage"), ("severity", "warning"))
    point = Point("alarm", tags, {"state": "raised", "value": 4.6}, 1_700_000_000_123_456_789)
    topic, payload = AlertFormat("cellmon/{severity}/{potline}/{cell}/{rule}")(point)
    assert topic == "cellmon/warning/P1/C7/high_voltage"
    assert orjson.loads(payload) == {
        "ts": 1_700_000_000_123,
        "potline": "P1",
        "cell": "C7",
        "rule": "high_voltage",
        "severity": "warning",
        "state": "raised",
        "value": 4.6,
    }


class Listener:
    """Collects what arrives on a topic filter, retained messages included."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"l-{uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, orjson.loads(m.payload), bool(m.retain))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


RULES = (
    DEFAULT_RULES
    + """\
alarms:
  - name: high_voltage
    field: cell_voltage_v
    above: 4.5
    hold_s: 30
    severity: warning
"""
)


@pytest.mark.integration
def test_alarm_transitions_are_published_retained(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    db = "alerts"
    influx_v1.create_database(db)
    topic = f"alerts-{uuid4().hex[:6]}"
    config = write_config(
        tmp_path,
        mqtt_port=plant_broker.port,
        influx_url=influx_v1.url,
        database=db,
        rules=RULES,
        extra=f"alerts:\n  topic: {topic}/{{potline}}/{{cell}}/{{rule}}\n",
    )
    listener = Listener(plant_broker.port, f"{topic}/#")
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    t0 = (time.time_ns() // NS - 3600) * 1000  # ms, an hour ago
    volts = [4.0, 4.0, 4.0, 4.6, 4.6, 4.6, 4.6, 4.6, 4.0, 4.0]  # one sample per 10 s
    messages = [
        (
            "smelter/P1/C1/telemetry",
            orjson.dumps({"ts": t0 + 10_000 * k, "cell_voltage_v": v, "line_current_ka": 400.0}),
        )
        for k, v in enumerate(volts)
    ]
    publish_all(plant_broker.port, messages)
    wait_for(lambda: len(listener.messages) >= 2, 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    listener.close()
    # above 4.5 from the sample at 30 s; held 30 s at the sample at 60 s; back at 80 s
    base = {"potline": "P1", "cell": "C1", "rule": "high_voltage", "severity": "warning"}
    where = f"{topic}/P1/C1/high_voltage"
    assert listener.messages == [
        (where, {"ts": t0 + 60_000, **base, "state": "raised", "value": 4.6}, False),
        (where, {"ts": t0 + 80_000, **base, "state": "cleared", "value": 4.0}, False),
    ]
    newcomer = Listener(plant_broker.port, f"{topic}/#")
    wait_for(lambda: newcomer.messages, 10)
    newcomer.close()
    assert newcomer.messages == [
        (where, {"ts": t0 + 80_000, **base, "state": "cleared", "value": 4.0}, True)
    ]
    rows = influx_v1.query("SELECT * FROM alarm", db)
    assert [(r["time"], r["state"], r["value"]) for r in rows] == [
        ((t0 + 60_000) * 1_000_000, "raised", 4.6),
        ((t0 + 80_000) * 1_000_000, "cleared", 4.0),
    ]


@pytest.mark.integration
def test_alerts_wait_in_the_journal_while_the_broker_is_down(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    broker.stop()  # its port, with no broker behind it yet
    state = tmp_path / "state"
    store = journal.Store(journal.connect_inbox(state), journal.connect_journal(state))
    alerts = [(f"t/{k}", orjson.dumps({"k": k})) for k in range(3)]
    store.commit(0, {}, [], 0, {}, alerts)
    queue = AlertQueue(journal.connect_journal(state))
    conn = Connection(
        host="127.0.0.1",
        port=broker.port,
        client_id=f"cellmon-{uuid4().hex[:6]}",
        keepalive_s=30,
        reconnect_max_s=1,
    )
    publisher = AlertPublisher(conn, queue, qos=1, retain=True)
    stop = threading.Event()
    thread = threading.Thread(target=publisher.run, args=(stop,))
    thread.start()
    try:
        assert [row[1] for row in queue.take(10)] == ["t/0", "t/1", "t/2"]  # nowhere to go
        broker.start()
        wait_for(lambda: queue.take(10) == [], 30)
        listener = Listener(broker.port, "t/#")  # subscribes after: the retained copies
        wait_for(lambda: len(listener.messages) == 3, 10)
        listener.close()
    finally:
        stop.set()
        thread.join(30)
        broker.stop()
    assert sorted(listener.messages) == [(f"t/{k}", {"k": k}, True) for k in range(3)]
    assert store.counters()["alerts_published"] == 3
