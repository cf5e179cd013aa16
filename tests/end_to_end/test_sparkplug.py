"""A day of a potline as Sparkplug B, through a real Mosquitto, against the same day as JSON.

The edge node P1-S01 (group P1) has three devices, one per cell. It publishes, as the
specification orders, NBIRTH, a DBIRTH per device with the first sample's values, and then
a day of DDATA by alias every minute; one DDATA is lost on the way (its seq is consumed),
C3 dies (DDEATH) for ten minutes and is born again; before all that, two DDATA of a session
the host never saw the birth of. The same samples (less the lost one and C3's dead
minutes) go as JSON to a second instance. The raw points and the day's kWh/t of both must
be the same; the gap, the unknown aliases and the rebirth requests are counted.
"""

from __future__ import annotations

import json
import queue
import threading
from datetime import datetime, timedelta
from pathlib import Path
from uuid import uuid4
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.source.deadletter import read_dead_letters
from collector.source.sparkplug.payload import Datatype, Metric, decode, encode
from tests.harness import DEFAULT_RULES, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mqtt_client")]

ZONE = ZoneInfo("Asia/Shanghai")
NS, MS = 1_000_000_000, 1_000_000
CELLS = ("C1", "C2", "C3")
STEPS = 1441  # every minute, 00:00 to 24:00
LOST = (500, "C2")  # the DDATA that never arrives
DEAD = range(800, 810)  # C3 between its DDEATH and its new DBIRTH at 810
day = datetime.now(ZONE).date() - timedelta(days=2)
T0_MS = int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp()) * 1000
SPARKPLUG_RULES = """\
sparkplug:
  - name: gateways
    group: P1
    potline: group
    cell: device
    rebirth_interval_s: 0.001
    metrics:
      cell_voltage_v: Voltage
      line_current_ka: {name: LineCurrent, unit: A}
"""
ALIAS = {
    (cell, name): 10 * c + k
    for c, cell in enumerate(CELLS)
    for k, name in enumerate(("Voltage", "LineCurrent"), start=1)
}


def volts(c: int, k: int) -> float:
    return 4.1 + 0.1 * c + 0.001 * (k % 10)


def kiloamps(k: int) -> float:
    return 300.0 + 0.5 * (k % 4)  # × 1000 and back is exact for halves


def sent(k: int, cell: str) -> bool:
    """Whether the sample of step k of a cell exists in both runs."""
    return (k, cell) != LOST and not (cell == "C3" and k in DEAD)


def ts(k: int) -> int:
    return T0_MS + 60_000 * k


class EdgeNode:
    """The edge node's messages, with its one sequence counter."""

    def __init__(self) -> None:
        self.seq = -1

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def topic(self, kind: str, device: str | None = None) -> str:
        return f"spBv1.0/P1/{kind}/P1-S01" + (f"/{device}" if device else "")

    def nbirth(self) -> tuple[str, bytes]:
        self.seq = -1
        bd = Metric(name="bdSeq", datatype=Datatype.INT64, value=0)
        return self.topic("NBIRTH"), encode(T0_MS, self.next_seq(), [bd])

    def dbirth(self, c: int, k: int) -> tuple[str, bytes]:
        cell = CELLS[c]
        metrics = [
            Metric(
                name="Voltage",
                alias=ALIAS[(cell, "Voltage")],
                datatype=Datatype.DOUBLE,
                value=volts(c, k),
                timestamp_ms=ts(k),
            ),
            Metric(
                name="LineCurrent",
                alias=ALIAS[(cell, "LineCurrent")],
                datatype=Datatype.DOUBLE,
                value=kiloamps(k) * 1000,
                timestamp_ms=ts(k),
            ),
        ]
        return self.topic("DBIRTH", cell), encode(ts(k), self.next_seq(), metrics)

    def ddata(self, c: int, k: int) -> tuple[str, bytes]:
        cell = CELLS[c]
        metrics = [
            Metric(
                alias=ALIAS[(cell, "Voltage")],
                datatype=Datatype.DOUBLE,
                value=volts(c, k),
                timestamp_ms=ts(k),
            ),
            Metric(
                alias=ALIAS[(cell, "LineCurrent")],
                datatype=Datatype.DOUBLE,
                value=kiloamps(k) * 1000,
                timestamp_ms=ts(k),
            ),
        ]
        return self.topic("DDATA", cell), encode(ts(k), self.next_seq(), metrics, datatypes=False)

    def ddeath(self, cell: str, k: int) -> tuple[str, bytes]:
        return self.topic("DDEATH", cell), encode(ts(k), self.next_seq(), [])


GARBAGE = ("spBv1.0/P1/DDATA/P1-S01/C1", b"\xff\xff\xff")


def sparkplug_messages() -> list[tuple[str, bytes]]:
    node = EdgeNode()
    # a session the host never saw born: its data by alias cannot be read
    node.seq = 199
    messages = [node.ddata(0, 0), node.ddata(0, 0)]
    messages += [node.nbirth(), *(node.dbirth(c, 0) for c in range(len(CELLS)))]
    messages.append(GARBAGE)  # the one really bad message: no seq of the node's consumed
    for k in range(1, STEPS):
        for c, cell in enumerate(CELLS):
            if cell == "C3" and k == DEAD.start:
                messages.append(node.ddeath(cell, k))
            elif cell == "C3" and k == DEAD.stop:
                messages.append(node.dbirth(c, k))
            elif (k, cell) == LOST:
                node.next_seq()  # lost on the way: its number is used
            elif sent(k, cell):
                messages.append(node.ddata(c, k))
    return messages


def json_messages() -> list[tuple[str, bytes]]:
    return [
        (
            f"smelter/P1/{cell}/telemetry",
            json.dumps(
                {"ts": ts(k), "cell_voltage_v": volts(c, k), "line_current_ka": kiloamps(k)}
            ).encode(),
        )
        for k in range(STEPS)
        for c, cell in enumerate(CELLS)
        if sent(k, cell)
    ]


def commands(broker: Mosquitto, seen: queue.Queue[tuple[str, bytes]]) -> mqtt.Client:
    """A client that records every NCMD on the broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ncmd-{uuid4().hex[:8]}")
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe("spBv1.0/+/NCMD/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, msg: seen.put((msg.topic, bytes(msg.payload)))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def points(influx: InfluxV1, db: str) -> set[tuple[str, int, float, float]]:
    rows = influx.query("SELECT voltage_v, current_ka FROM cell GROUP BY cell", db)
    return {(r["cell"], r["time"], r["voltage_v"], r["current_ka"]) for r in rows}


def run(
    tmp_path: Path,
    broker: Mosquitto,
    influx: InfluxV1,
    db: str,
    rules: str,
    messages: list[tuple[str, bytes]],
) -> None:
    influx.create_database(db)
    config = write_config(
        tmp_path, mqtt_port=broker.port, influx_url=influx.url, database=db, rules=rules
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    publish_all(broker.port, messages)
    expected = sum(sent(k, c) for k in range(STEPS) for c in CELLS)
    wait_for(lambda: len(points(influx, db)) >= expected, 120, pipeline.new_log)
    assert pipeline.terminate() == 0


def test_a_sparkplug_day_gives_the_points_and_kpis_of_the_same_day_as_json(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    seen: queue.Queue[tuple[str, bytes]] = queue.Queue()
    watcher = commands(plant_broker, seen)
    sp, js = (f"{name}_{uuid4().hex[:8]}" for name in ("sp", "js"))  # per run of the test
    try:
        run(tmp_path / "sp", plant_broker, influx_v1, sp, SPARKPLUG_RULES, sparkplug_messages())
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    run(tmp_path / "js", plant_broker, influx_v1, js, DEFAULT_RULES, json_messages())

    assert points(influx_v1, sp) == points(influx_v1, js)
    assert len(points(influx_v1, sp)) == STEPS * 3 - 1 - len(DEAD)
    day_sp = influx_v1.query("SELECT * FROM sec_cell WHERE period = 'day' GROUP BY cell", sp)
    day_js = influx_v1.query("SELECT * FROM sec_cell WHERE period = 'day' GROUP BY cell", js)
    assert len(day_sp) == len(CELLS)
    for a, b in zip(day_sp, day_js, strict=True):
        assert (a["cell"], a["time"]) == (b["cell"], b["time"])
        for name in ("energy_kwh", "aluminium_t", "sec_kwh_per_t", "hours_covered"):
            assert a[name] == pytest.approx(b[name], rel=1e-12), name

    (metrics,) = influx_v1.query(
        "SELECT last(sparkplug_seq_gaps) AS gaps, last(sparkplug_lost) AS lost, "
        "last(sparkplug_unknown_alias) AS unknown, last(sparkplug_rebirth_requests) AS asked, "
        "last(sparkplug_births) AS births, last(sparkplug_deaths) AS deaths FROM cellmon",
        sp,
    )
    # the session before the birth: its seq 200, 201 said nothing; then exactly one lost
    assert (metrics["gaps"], metrics["lost"]) == (1, 1)
    assert metrics["unknown"] == 2 * 2  # two DDATA of two metrics each
    assert (metrics["births"], metrics["deaths"]) == (1 + 3 + 1, 1)
    requests = [seen.get_nowait() for _ in range(seen.qsize())]
    assert len(requests) == metrics["asked"] >= 2  # before the birth, and at the gap
    for topic, body in requests:
        assert topic == "spBv1.0/P1/NCMD/P1-S01"
        assert [(m.name, m.value) for m in decode(body).metrics] == [("Node Control/Rebirth", True)]
    # the host's own rebirth requests came back through the broker as nothing at all
    letters = read_dead_letters(tmp_path / "sp" / "state" / "deadletter.jsonl")
    assert [(d["topic"], d["reason"]) for d in letters] == [(GARBAGE[0], "bad_sparkplug")]


def test_the_primary_host_announces_itself_and_its_will_says_offline(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    influx_v1.create_database("state")
    host = f"cellmon-test-{uuid4().hex[:8]}"  # the broker retains the STATE of earlier runs
    config = write_config(
        tmp_path,
        mqtt_port=plant_broker.port,
        influx_url=influx_v1.url,
        database="state",
        rules=SPARKPLUG_RULES + f"    primary_host: {host}\n",
    )
    seen: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"state-{uuid4().hex[:8]}")
    client.on_connect = lambda c, *_: c.subscribe(f"spBv1.0/STATE/{host}", qos=1)
    client.on_message = lambda _c, _u, m: seen.put((m.topic, bytes(m.payload), m.retain))
    client.connect("127.0.0.1", plant_broker.port)
    client.loop_start()
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    try:
        pipeline.start()
        _, birth, _ = seen.get(timeout=30)
        online = json.loads(birth)
        assert online["online"] is True
        pipeline.kill()  # no goodbye: the broker publishes the will
        _, will, _ = seen.get(timeout=30)
        assert json.loads(will) == {"online": False, "timestamp": online["timestamp"]}
    finally:
        client.loop_stop()
        client.disconnect()
