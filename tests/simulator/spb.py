"""Helpers for the Sparkplug tests: a plain paho listener, decoded messages, the simulator
as a subprocess, and the reference potline the values are checked against."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from uuid import uuid4

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.source.sparkplug.payload import Payload, decode
from collector.source.sparkplug.topics import Topic, parse
from simulator.payloads import PotlineSim
from tests.harness import ROOT, wait_for

S = 1_000_000_000
T0 = 1_230_768_000_000_000_000  # 2009-01-01T00:00:00Z in ns
DAY = 86400 * S
TIMEOUT_S = 20.0
# The datatype numbers of the Sparkplug 3.0 specification (section 6.4.16), written out.
INT32, INT64, FLOAT, DOUBLE, BOOLEAN, STRING = 3, 4, 9, 10, 11, 12
DEVICE_TYPES = {
    "Voltage": DOUBLE,
    "LineCurrent": DOUBLE,
    "BathTemp": FLOAT,
    "Noise": FLOAT,
    "AnodeChange/Position": INT32,
    "AnodeChange/Block": STRING,
    "MetalTap/Kg": DOUBLE,
}
EVENT_METRICS = {"AnodeChange/Position", "AnodeChange/Block", "MetalTap/Kg"}


class Message(NamedTuple):
    """One Sparkplug message of the group under test, decoded."""

    topic: Topic
    payload: Payload
    qos: int


class Listener:
    """Every message under ``spBv1.0/#``, in arrival order, as a plain host would see it."""

    def __init__(self, port: int) -> None:
        self.raw: list[tuple[str, bytes, int]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spl-{uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("spBv1.0/#", qos=1)
        assert subscribed.wait(TIMEOUT_S), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.raw.append((message.topic, message.payload, message.qos))

    def messages(self, group: str) -> list[Message]:
        """The group's messages so far, decoded."""
        with self._lock:
            raw = list(self.raw)
        parsed = [(parse(topic), payload, qos) for topic, payload, qos in raw]
        return [
            Message(t, decode(p), qos) for t, p, qos in parsed if t is not None and t.group == group
        ]

    def of(self, group: str, kind: str, node: str | None = None) -> list[Message]:
        """The group's messages of one type, of one node if given."""
        return [
            m
            for m in self.messages(group)
            if m.topic.type == kind and (node is None or m.topic.edge_node == node)
        ]

    def wait(self, group: str, kind: str, count: int, node: str | None = None) -> None:
        """Until ``count`` messages of the type have arrived."""
        wait_for(
            lambda: len(self.of(group, kind, node)) >= count,
            TIMEOUT_S,
            lambda: f"{len(self.of(group, kind, node))} {kind}",
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def group_id() -> str:
    """A potline id of its own for each test, so tests never see each other's messages."""
    return f"T{uuid4().hex[:6]}"


def reference(group: str, cells: int, start_ns: int, seed: int = 3) -> PotlineSim:
    """The JSON mode's potline: what the Sparkplug messages must carry."""
    return PotlineSim(group, cells, seed=seed, start_ns=start_ns, interval_s=1.0)


def start_before_first_event(group: str, cells: int, seed: int = 3) -> int:
    """A whole second 10 s before the potline's first event of the day."""
    first = reference(group, cells, T0, seed).events(T0, T0 + DAY)[0].ts_ns
    return (first // S - 10) * S


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // S, UTC).isoformat()


def simulate_argv(port: int, group: str, *extra: str) -> list[str]:
    return [
        *("--host", "127.0.0.1", "--port", str(port), "--potline", group),
        *("--format", "sparkplug", "--seed", "3", "--interval-s", "1"),
        *extra,
    ]


class Simulation:
    """``cellmon simulate --format sparkplug`` as a process of its own, killed at the end."""

    def __init__(self, log: Path, argv: list[str]) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector.commands.cli", "simulate", *argv],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the broker, not the simulator, has to say NDEATH."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def metric(message: Message, name: str) -> object:
    """The value of a named metric of a message."""
    (value,) = [m.value for m in message.payload.metrics if m.name == name]
    return value
