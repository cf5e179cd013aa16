"""Publish a simulated potline over MQTT, as its cell controllers would.

Optionally spoils a share of the telemetry (malformed messages, re-sent duplicates) so that
tests and the demo exercise the pipeline's rejection and de-duplication paths; the counts
returned say exactly what was sent, so a receiver can be checked against them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulator.parameters import NS_PER_S
from simulator.payloads import (
    DEFAULT_EVENT_TOPIC,
    DEFAULT_TELEMETRY_TOPIC,
    Payload,
    PotlineSim,
    Record,
    Spoiler,
    dumps,
    topic,
)

# ~115 bytes a sample: 2,000 keeps an array under the contract's 256 KiB payload limit.
MAX_ARRAY_SIZE = 2000
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PublishOptions:
    """Where and how to publish.

    ``speed``: 0 publishes as fast as the broker acknowledges, 1 in real time (each sample
    at its time after the first), k > 0 k times faster. ``array_size`` k > 1 sends each
    cell's samples as arrays of k objects, as a controller flushing its buffer.
    ``bad_fraction`` of the telemetry messages are malformed, one kind of
    ``payloads.MALFORMED_KINDS`` each; ``dup_fraction`` of the clean ones are published twice.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    qos: int = 1
    speed: float = 0.0
    array_size: int = 1
    bad_fraction: float = 0.0
    dup_fraction: float = 0.0
    telemetry_topic: str = DEFAULT_TELEMETRY_TOPIC
    event_topic: str = DEFAULT_EVENT_TOPIC
    client_id: str | None = None
    max_inflight: int = 1000
    ack_timeout_s: float = 30.0
    seed: int = 0
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        """Fail before connecting rather than halfway through a run."""
        if not 1 <= self.array_size <= MAX_ARRAY_SIZE:
            msg = f"array_size must be in [1, {MAX_ARRAY_SIZE}]"
            raise ValueError(msg)
        if not (0 <= self.bad_fraction <= 1 and 0 <= self.dup_fraction <= 1):
            msg = "bad_fraction and dup_fraction must be in [0, 1]"
            raise ValueError(msg)
        if self.speed < 0 or self.qos not in (0, 1, 2) or self.max_inflight < 1:
            msg = "speed must be >= 0, qos 0, 1 or 2, max_inflight >= 1"
            raise ValueError(msg)


@dataclass
class PublishCounts:
    """What was published.

    ``samples``: well-formed telemetry objects, first copies only; ``events``: event
    objects; ``messages``: MQTT publishes, duplicates included; ``malformed``: malformed
    messages by kind (a ``bad_json`` message loses all its samples, any other kind spoils
    exactly one object of its message); ``duplicates``: samples published a second time.
    """

    samples: int = 0
    events: int = 0
    messages: int = 0
    duplicates: int = 0
    malformed: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for people."""
        bad = ", ".join(f"{kind} {n}" for kind, n in sorted(self.malformed.items())) or "none"
        return (
            f"{self.samples} samples, {self.events} events in {self.messages} messages; "
            f"malformed: {bad}; duplicates: {self.duplicates}"
        )


def start_session(
    client: mqtt.Client,
    host: str,
    port: int,
    connected: threading.Event,
    refused: Callable[[], str | None],
    what: str,
) -> None:
    """Connect and start paho's loop; ConnectionError when the broker refuses or is silent.

    ``connected`` is set by the CONNACK callback, success or not; ``refused`` then says why
    the broker said no.
    """
    client.connect(host, port)
    client.loop_start()
    why = refused() if connected.wait(CONNECT_TIMEOUT_S) else "timeout"
    if why:
        client.loop_stop()
        msg = f"MQTT broker {host}:{port} did not accept {what}: {why}"
        raise ConnectionError(msg)


class _Connection:
    """A paho client that never has more than ``max_inflight`` publishes unacknowledged.

    paho queues without bound, so at full speed the semaphore is what keeps memory flat.
    """

    def __init__(self, options: PublishOptions, client_id: str) -> None:
        self._options = options
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id
        )
        self._client.max_inflight_messages_set(options.max_inflight)
        if options.username is not None:
            self._client.username_pw_set(options.username, options.password)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._window = threading.Semaphore(options.max_inflight)
        self._connected = threading.Event()
        self._refused: str | None = None

    def __enter__(self) -> _Connection:
        options = self._options
        start_session(
            self._client,
            options.host,
            options.port,
            self._connected,
            lambda: self._refused,
            "the connection",
        )
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self._wait_acknowledged()
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def send(self, topic: str, payload: bytes) -> None:
        """Publish, first waiting for room in the window of unacknowledged messages."""
        if not self._window.acquire(timeout=self._options.ack_timeout_s):
            msg = f"no acknowledgement within {self._options.ack_timeout_s} s"
            raise TimeoutError(msg)
        info = self._client.publish(topic, payload, qos=self._options.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            msg = f"publish to {topic} failed: {mqtt.error_string(info.rc)}"
            raise ConnectionError(msg)

    def _wait_acknowledged(self) -> None:
        """All publishes are acknowledged once every slot of the window is free again."""
        deadline = time.monotonic() + self._options.ack_timeout_s
        for taken in range(self._options.max_inflight):
            if not self._window.acquire(timeout=max(0.0, deadline - time.monotonic())):
                missing = self._options.max_inflight - taken
                msg = f"{missing} publishes still unacknowledged"
                raise TimeoutError(msg)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        self._connected.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, *_: Any) -> None:
        self._window.release()


class Pacer:
    """Maps sample time to wall time: the first sample now, the rest ``speed`` times faster."""

    def __init__(self, speed: float, origin_ns: int) -> None:
        self._speed = speed
        self._origin_ns = origin_ns
        self._wall0 = time.monotonic()

    def wait_for(self, ts_ns: int) -> None:
        """Sleep until the sample at ``ts_ns`` is due (shared by the JSON and Sparkplug modes)."""
        if self._speed == 0:
            return
        due = self._wall0 + (ts_ns - self._origin_ns) / NS_PER_S / self._speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _Publisher:
    """One publishing run: buffers each cell's samples into arrays and counts as it goes."""

    def __init__(self, sim: PotlineSim, options: PublishOptions, connection: _Connection):
        self._sim = sim
        self._options = options
        self._connection = connection
        self._spoiler = Spoiler(options.seed, options.bad_fraction, options.dup_fraction)
        self._buffers: dict[str, list[Payload]] = {}
        self.counts = PublishCounts()

    def run(self, t0_ns: int, t1_ns: int) -> None:
        pacer = Pacer(self._options.speed, t0_ns)
        for record in self._sim.stream(t0_ns, t1_ns):
            pacer.wait_for(record.ts_ns)
            self._take(record)
        for cell, objects in self._buffers.items():
            if objects:
                self._send_telemetry(cell, objects)

    def _take(self, record: Record) -> None:
        if record.kind == "event":
            self._send(self._options.event_topic, record.cell, dumps(record.payload))
            self.counts.events += 1
            return
        buffer = self._buffers.setdefault(record.cell, [])
        buffer.append(record.payload)
        if len(buffer) == self._options.array_size:
            self._send_telemetry(record.cell, buffer)
            self._buffers[record.cell] = []

    def _send_telemetry(self, cell: str, objects: list[Payload]) -> None:
        kind = self._spoiler.kind()
        payload = self._spoiler.encode(objects, self._options.array_size == 1, kind)
        self._send(self._options.telemetry_topic, cell, payload)
        if kind is None:
            self.counts.samples += len(objects)
            if self._spoiler.repeat():
                self._send(self._options.telemetry_topic, cell, payload)
                self.counts.duplicates += len(objects)
            return
        self.counts.malformed[kind] += 1
        self.counts.samples += 0 if kind == "bad_json" else len(objects) - 1

    def _send(self, template: str, cell: str, payload: bytes) -> None:
        self._connection.send(topic(template, self._sim.potline, cell), payload)
        self.counts.messages += 1


def publish(sim: PotlineSim, t0_ns: int, t1_ns: int, options: PublishOptions) -> PublishCounts:
    """Publish the telemetry and events of ``[t0_ns, t1_ns)``; return once all are acknowledged.

    Raises ConnectionError when the broker cannot be reached or refuses us, TimeoutError
    when it stops acknowledging.
    """
    client_id = options.client_id or f"cellmon-sim-{sim.potline}-{os.getpid()}"
    with _Connection(options, client_id) as connection:
        publisher = _Publisher(sim, options, connection)
        publisher.run(t0_ns, t1_ns)
    return publisher.counts
