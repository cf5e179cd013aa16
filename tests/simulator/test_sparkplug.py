"""``cellmon simulate --format sparkplug`` through a real Mosquitto, read by a plain client.

Expected values come from the JSON mode's own columns and events of the same seed, never
from the simulator's Sparkplug encoder; datatypes and names from the specification's table.
"""

import argparse
import json
from collections import Counter, defaultdict

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.source.sparkplug.payload import Metric, encode
from simulator import cli
from tests.harness import wait_for
from tests.simulator.spb import (
    BOOLEAN,
    DAY,
    DEVICE_TYPES,
    EVENT_METRICS,
    INT64,
    T0,
    TIMEOUT_S,
    Listener,
    Message,
    S,
    Simulation,
    group_id,
    metric,
    reference,
    rfc3339,
    simulate_argv,
    start_before_first_event,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def listener(mosquitto):
    listening = Listener(mosquitto.port)
    yield listening
    listening.close()


def run_cli(port: int, group: str, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(simulate_argv(port, group, "--speed", "0", *extra)))


def by_node(messages: list[Message]) -> dict[str, list[Message]]:
    nodes: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        nodes[m.topic.edge_node].append(m)
    return nodes


def seqs(messages: list[Message]) -> list[int | None]:
    return [m.payload.seq for m in messages if m.topic.type != "NDEATH"]


def aliases(births: list[Message]) -> dict[int, tuple[str, str]]:
    """alias -> (device, metric name), from the DBIRTHs."""
    return {m.alias: (b.topic.device, m.name) for b in births for m in b.payload.metrics}


def test_births_then_data_with_the_json_modes_values(mosquitto, listener, capsys) -> None:
    group, cells, steps = group_id(), 5, 150
    start = start_before_first_event(group, cells)
    ref = reference(group, cells, start)
    extra = ("--cells", "5", "--section-cells", "2", "--steps", str(steps), "--qos", "1")

    assert run_cli(mosquitto.port, group, "--start", rfc3339(start), *extra) == 0

    listener.wait(group, "NDEATH", 3)
    nodes = by_node(listener.messages(group))
    assert sorted(nodes) == [f"{group}-S01", f"{group}-S02", f"{group}-S03"]
    for node, messages in nodes.items():
        births = [m for m in messages if m.topic.type == "DBIRTH"]
        assert_node_birth(messages[0], start // 1_000_000)
        assert_births_precede_data(messages)
        assert_declared(births)
        assert seqs(messages) == [k % 256 for k in range(len(seqs(messages)))], node
        assert messages[-1].topic.type == "NDEATH"
        assert metric(messages[-1], "bdSeq") == 0
    assert len(seqs(nodes[f"{group}-S01"])) > 256  # the seq went round
    assert {m.qos for m in listener.messages(group)} == {1}  # as --qos asked
    assert_values(listener.messages(group), ref, steps)
    assert "drops: 0" in capsys.readouterr().out


def assert_node_birth(first: Message, start_ms: int) -> None:
    assert first.topic.type == "NBIRTH"
    assert first.payload.seq == 0
    assert first.payload.timestamp_ms == start_ms
    declared = {m.name: (m.datatype, m.value) for m in first.payload.metrics}
    assert declared == {"bdSeq": (INT64, 0), "Node Control/Rebirth": (BOOLEAN, False)}


def assert_births_precede_data(messages: list[Message]) -> None:
    born: set[str] = set()
    for m in messages[1:-1]:
        assert m.topic.type in ("DBIRTH", "DDATA")
        if m.topic.type == "DBIRTH":
            born.add(m.topic.device)
        assert m.topic.device in born


def assert_declared(births: list[Message]) -> None:
    every = [m.alias for b in births for m in b.payload.metrics]
    assert len(every) == len(set(every)) == 7 * len(births)  # unique within the node
    for birth in births:
        declared = {m.name: m.datatype for m in birth.payload.metrics}
        assert declared == DEVICE_TYPES
        for m in birth.payload.metrics:
            assert m.timestamp_ms == birth.payload.timestamp_ms
            assert m.is_null == (m.name in EVENT_METRICS)


def assert_values(messages: list[Message], ref, steps: int) -> None:
    names = aliases([m for m in messages if m.topic.type == "DBIRTH"])
    got: dict[tuple[str, str, int], object] = {}
    for m in messages:
        if m.topic.type not in ("DBIRTH", "DDATA"):
            continue
        for x in m.payload.metrics:
            if m.topic.type == "DDATA":
                assert (x.name, x.datatype) == (None, None)
                assert x.alias in names
                assert x.timestamp_ms == m.payload.timestamp_ms
            if not x.is_null:
                got[(m.topic.device, names[x.alias][1], x.timestamp_ms)] = x.value
    assert got == expected_values(ref, steps)


def expected_values(ref, steps: int) -> dict[tuple[str, str, int], object]:
    cols = ref.columns(0, steps)
    want: dict[tuple[str, str, int], object] = {}
    for k, ts_ns in enumerate(cols.ts_ns.tolist()):
        ts = ts_ns // 1_000_000
        for c, cell in enumerate(ref.cell_ids):
            want[(cell, "Voltage", ts)] = cols.cell_voltage_v[k, c]
            amperes = cols.line_current_ka[k] * 1000
            want[(cell, "LineCurrent", ts)] = pytest.approx(amperes, rel=1e-12)
            want[(cell, "BathTemp", ts)] = float(np.float32(cols.bath_temp_c[k, c]))
            want[(cell, "Noise", ts)] = float(np.float32(cols.noise_uohm[k, c]))
    events = ref.events(ref.start_ns, ref.start_ns + steps * S)
    assert events, "the window was chosen to hold an event"
    for e in events:
        ts, p = e.payload["ts"], e.payload
        if p["type"] == "anode_change":
            want[(e.cell, "AnodeChange/Position", ts)] = p["anode"]
            want[(e.cell, "AnodeChange/Block", ts)] = p["block"]
        else:
            want[(e.cell, "MetalTap/Kg", ts)] = pytest.approx(p["metal_kg"], rel=1e-15)
    return want


def test_drop_every_leaves_exactly_those_seq_gaps(mosquitto, listener, capsys) -> None:
    group, steps, n = group_id(), 100, 7
    start = start_before_first_event(group, 3)
    extra = ("--cells", "3", "--steps", str(steps), "--drop-every", str(n), "--qos", "1")

    assert run_cli(mosquitto.port, group, "--start", rfc3339(start), *extra) == 0

    listener.wait(group, "NDEATH", 1)
    events = len(reference(group, 3, start).events(start, start + steps * S))
    # NBIRTH 0, DBIRTH 1..3 (they carry the first sample), then the DDATA j = 1, 2, ...
    data = 3 * (steps - 1) + events
    kept = [(3 + j) % 256 for j in range(1, data + 1) if j % n != 0]
    assert seqs(listener.messages(group)) == [0, 1, 2, 3, *kept]
    assert f"drops: {data // n}" in capsys.readouterr().out


def test_a_device_dies_and_is_born_again_a_step_later(mosquitto, listener) -> None:
    group, start = group_id(), 1_230_768_000 * S
    ref = reference(group, 3, start)
    extra = ("--cells", "3", "--steps", "12", "--death-every-s", "4", "--qos", "1")

    assert run_cli(mosquitto.port, group, "--start", rfc3339(start), *extra) == 0

    listener.wait(group, "NDEATH", 1)
    messages = listener.messages(group)
    assert seqs(messages) == list(range(len(seqs(messages))))
    cols = ref.columns(0, 12)
    ms = [t // 1_000_000 for t in cols.ts_ns.tolist()]
    for c, cell, died in ((0, "C001", 4), (1, "C002", 8)):
        mine = [m for m in messages if m.topic.device == cell]
        kinds = [(m.topic.type, m.payload.timestamp_ms) for m in mine]
        assert ("DDEATH", ms[died]) in kinds
        after = kinds.index(("DDEATH", ms[died]))
        assert kinds[after + 1] == ("DBIRTH", ms[died + 1])
        assert ("DDATA", ms[died]) not in kinds
        assert metric(mine[after + 1], "Voltage") == cols.cell_voltage_v[died + 1, c]
    third = Counter(m.topic.type for m in messages if m.topic.device == "C003")
    assert third == {"DBIRTH": 1, "DDATA": 11}


def rebirth_request() -> bytes:
    return encode(None, None, [Metric(name="Node Control/Rebirth", datatype=BOOLEAN, value=True)])


def after_second_birth(listener: Listener, group: str, node: str) -> list[tuple[str, str]]:
    """(type, device) of the node's messages after its second NBIRTH, if it came."""
    mine = by_node(listener.messages(group))[node]
    births = [i for i, m in enumerate(mine) if m.topic.type == "NBIRTH"]
    return [] if len(births) < 2 else [(m.topic.type, m.topic.device) for m in mine[births[1] :]]


def test_ncmd_rebirth_republishes_the_births(mosquitto, listener, tmp_path) -> None:
    group = group_id()
    node = f"{group}-S01"
    argv = simulate_argv(mosquitto.port, group, "--cells", "4", "--section-cells", "2")
    both = {("DDATA", "C001"), ("DDATA", "C002")}
    with Simulation(tmp_path / "sim.log", [*argv, "--duration-s", "3600", "--speed", "20"]) as sim:
        listener.wait(group, "DDATA", 4, node)
        listener.client.publish(f"spBv1.0/{group}/NCMD/{node}", rebirth_request(), qos=1)
        wait_for(lambda: both <= set(after_second_birth(listener, group, node)), TIMEOUT_S)
        wait_for(lambda: "rebirth" in sim.output(), TIMEOUT_S, sim.output)
    rebirth = listener.of(group, "NBIRTH", node)[1]
    assert rebirth.payload.seq == 0
    assert metric(rebirth, "bdSeq") == 0  # the same session
    after = after_second_birth(listener, group, node)
    for cell in ("C001", "C002"):
        assert after.index(("DBIRTH", cell)) < after.index(("DDATA", cell))
    assert len(listener.of(group, "NBIRTH", f"{group}-S02")) == 1  # it was not asked


def test_the_will_says_ndeath_with_the_sessions_bdseq(mosquitto, listener, tmp_path) -> None:
    group = group_id()
    argv = simulate_argv(mosquitto.port, group, "--cells", "3", "--section-cells", "2")
    with Simulation(tmp_path / "sim.log", [*argv, "--duration-s", "3600", "--speed", "20"]) as sim:
        listener.wait(group, "DDATA", 6)
        assert not listener.of(group, "NDEATH")
        sim.kill()
        listener.wait(group, "NDEATH", 2)
    for death in listener.of(group, "NDEATH"):
        (birth,) = listener.of(group, "NBIRTH", death.topic.edge_node)
        assert metric(death, "bdSeq") == metric(birth, "bdSeq") == 0
        assert death.payload.seq is None
        assert death.qos == 1  # the will's QoS, though data goes at the default QoS 0
        assert [m.datatype for m in death.payload.metrics] == [INT64]
    assert {m.qos for m in listener.messages(group) if m.topic.type != "NDEATH"} == {0}


def test_births_wait_for_the_primary_host(mosquitto, listener, tmp_path) -> None:
    group = group_id()
    host = f"H{group}"
    argv = simulate_argv(mosquitto.port, group, "--cells", "2", "--primary-host", host)
    with Simulation(tmp_path / "sim.log", [*argv, "--duration-s", "3600", "--speed", "20"]) as sim:
        wait_for(lambda: "waiting for primary host" in sim.output(), TIMEOUT_S, sim.output)
        state = json.dumps({"online": True, "timestamp": 1}).encode()
        listener.client.publish(f"spBv1.0/STATE/{host}", state, qos=1, retain=True)
        listener.wait(group, "NBIRTH", 1)
    listener.client.publish(f"spBv1.0/STATE/{host}", b"", qos=1, retain=True).wait_for_publish(5)
    topics = [t for t, _, _ in listener.raw]
    first_birth = next(i for i, t in enumerate(topics) if t.startswith(f"spBv1.0/{group}/"))
    assert topics.index(f"spBv1.0/STATE/{host}") < first_birth
    assert topics[first_birth] == f"spBv1.0/{group}/NBIRTH/{group}-S01"


def take_over(port: int, client_id: str) -> None:
    """Connect with the node's client id: the broker ends the node's session, as a lost link."""
    impostor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    impostor.connect("127.0.0.1", port)
    impostor.loop_start()
    wait_for(impostor.is_connected, TIMEOUT_S)
    impostor.disconnect()
    impostor.loop_stop()


def test_a_new_session_is_born_with_the_next_bdseq(mosquitto, listener, tmp_path) -> None:
    group = group_id()
    node = f"{group}-S01"
    argv = simulate_argv(mosquitto.port, group, "--cells", "2")
    with Simulation(tmp_path / "sim.log", [*argv, "--duration-s", "3600", "--speed", "20"]) as sim:
        listener.wait(group, "DDATA", 2)
        take_over(mosquitto.port, f"cellmon-sim-{node}-{sim.proc.pid}")
        listener.wait(group, "NDEATH", 1)
        listener.wait(group, "NBIRTH", 2)
        listener.wait(group, "DBIRTH", 4)
        sim.kill()
        listener.wait(group, "NDEATH", 2)
    births, deaths = listener.of(group, "NBIRTH"), listener.of(group, "NDEATH")
    assert [metric(m, "bdSeq") for m in births] == [0, 1]
    assert [metric(m, "bdSeq") for m in deaths] == [0, 1]  # the will follows the session
    assert births[1].payload.seq == 0
    mine = listener.messages(group)
    after = [(m.topic.type, m.topic.device) for m in mine[mine.index(births[1]) + 1 :]]
    assert after[:2] == [("DBIRTH", "C001"), ("DBIRTH", "C002")]


def test_an_event_between_ddeath_and_dbirth_is_lost(mosquitto, listener, capsys) -> None:
    group = group_id()
    event = reference(group, 1, T0).events(T0, T0 + DAY)[0]
    start = (event.ts_ns // S - 4) * S  # the device dies at step 4, the event's second
    extra = ("--cells", "1", "--steps", "8", "--death-every-s", "4", "--qos", "1")

    assert run_cli(mosquitto.port, group, "--start", rfc3339(start), *extra) == 0

    listener.wait(group, "NDEATH", 1)
    kinds = [m.topic.type for m in listener.messages(group)]
    # steps 0..3 born and sent, step 4 DDEATH (then the event), step 5 DBIRTH, 6 and 7 sent
    died = ["DDEATH", "DBIRTH", *["DDATA"] * 2, "NDEATH"]
    assert kinds == ["NBIRTH", "DBIRTH", *["DDATA"] * 3, *died]
    assert "lost events: 1" in capsys.readouterr().out
