"""The compose stack, checked as files (no Docker engine here) and, for the broker's
access rules, against a real Mosquitto."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path
from uuid import uuid4

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from collector.config.loader import load_config
from tests.harness import ROOT
from tests.servers import Mosquitto, find_binary

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_pinned_image_or_a_build(name: str) -> None:
    service = SERVICES[name]
    if "build" in service:
        return
    image = service["image"]
    assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+[\w.-]*", image), f"{name}: unpinned {image}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_secret_is_inline(name: str) -> None:
    for key, value in (SERVICES[name].get("environment") or {}).items():
        if SECRET.search(key):
            assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", str(value)), f"{name}.{key} inline"


def test_every_referenced_variable_is_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    example = (ROOT / ".env.example").read_text()
    declared = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert used <= declared
    assert ".env" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_files_exist(name: str) -> None:
    for volume in SERVICES[name].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (ROOT / source).exists(), f"{name}: {source} missing"


def test_cellmon_service_config_is_valid_and_uses_the_environment() -> None:
    cfg = load_config(ROOT / "config" / "cellmon.compose.yaml")
    assert cfg.mqtt.host == "mosquitto"
    assert cfg.influx.url == "http://influxdb:8086"
    env = SERVICES["cellmon"]["environment"]
    assert {cfg.influx.token_env, cfg.mqtt.username_env, cfg.mqtt.password_env} <= set(env)
    assert "healthcheck" in SERVICES["cellmon"]
    # two shards, and the healthcheck watches the journal of each
    assert [s.name for s in cfg.shards] == ["p1", "p2"]
    probe = " ".join(SERVICES["cellmon"]["healthcheck"]["test"])
    assert all(f"{cfg.state_dir}/$$s/journal" in probe and s.name in probe for s in cfg.shards)
    assert SERVICES["cellmon"]["restart"]
    assert SERVICES["simulator"]["profiles"] == ["demo"]


def seconds(duration: str) -> float:
    """A compose duration such as ``1m30s`` in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(n) * units[u] for n, u in parts)


def test_cellmon_is_given_its_shutdown_time_before_it_is_killed() -> None:
    cfg = load_config(ROOT / "config" / "cellmon.compose.yaml")
    assert seconds(SERVICES["cellmon"]["stop_grace_period"]) > cfg.sink.shutdown_s


@pytest.mark.integration
def test_broker_acl_controllers_publish_cellmon_reads_and_alerts(tmp_path: Path) -> None:
    """The shipped acl and auth settings, on a real Mosquitto with a throwaway password file."""
    passwords = tmp_path / "passwords"
    passwd = find_binary("mosquitto_passwd")
    subprocess.run([passwd, "-b", "-c", str(passwords), "cellmon", "c-secret"], check=True)
    subprocess.run([passwd, "-b", str(passwords), "controller", "p-secret"], check=True)
    shutil.copy(ROOT / "config" / "mosquitto" / "acl", tmp_path / "acl")
    settings = f"allow_anonymous false\npassword_file {passwords}\nacl_file {tmp_path / 'acl'}\n"
    with Mosquitto(tmp_path / "broker", extra_config=settings) as broker:
        got: list[str] = []
        received = threading.Event()

        last = threading.Event()

        def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
            got.append(msg.topic)
            received.set()
            if msg.topic.endswith("/event"):
                last.set()

        reader = client(broker.port, "cellmon", "c-secret")
        reader.on_message = on_message
        reader.subscribe("#", qos=1)
        writer = client(broker.port, "controller", "p-secret")
        writer.publish("elsewhere/x", b"1", qos=1).wait_for_publish(10)
        writer.publish("smelter/P1/C001/telemetry", b"2", qos=1).wait_for_publish(10)
        assert received.wait(10)
        reader.publish("smelter/P1/C001/telemetry", b"3", qos=1).wait_for_publish(10)
        reader.publish("cellmon/alarms/P1/C001/no_data", b"5", qos=1).wait_for_publish(10)
        writer.publish("cellmon/alarms/P1/C001/forged", b"6", qos=1).wait_for_publish(10)
        anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"anon-{uuid4().hex[:6]}")
        refused = threading.Event()
        anonymous.on_connect = lambda *a: refused.set() if a[3].is_failure else None
        anonymous.connect("127.0.0.1", broker.port)
        anonymous.loop_start()
        assert refused.wait(10)
        anonymous.loop_stop()
        writer.publish("smelter/P1/C001/event", b"4", qos=1).wait_for_publish(10)
        assert last.wait(10)
        for c in (reader, writer):
            c.loop_stop()
            c.disconnect()
    # cellmon saw the controller's smelter/ messages and its own alert, nothing else: not
    # elsewhere/, not its own write to smelter/, not an alert forged by a controller
    assert sorted(got) == [
        "cellmon/alarms/P1/C001/no_data",
        "smelter/P1/C001/event",
        "smelter/P1/C001/telemetry",
    ]


def client(port: int, user: str, password: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid4().hex[:6]}")
    c.username_pw_set(user, password)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(10)
    return c
