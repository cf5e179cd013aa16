"""One simulated Sparkplug B edge node: its MQTT session, seq and bdSeq, its devices' births.

A plant's gateway owns a section of cells; the host application tracks it by the node's
birth and death certificates and by ``seq``, so this class is where the rules of
Sparkplug 3.0 (section 5) live: a will that carries the session's bdSeq, NBIRTH before
any other message of a session, DBIRTH before a device's data, seq +1 mod 256 per message,
rebirth on request. Only the publishing thread changes a node's state; the MQTT thread
merely raises flags (a new session, a rebirth request, the primary host online) that the
next publish acts on, so a birth is never interleaved with data.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.source.sparkplug.payload import Metric, PayloadError, decode, encode
from collector.source.sparkplug.topics import REBIRTH, MessageType, Topic, state_topic
from simulator.parameters import NS_PER_MS
from simulator.payloads import Payload
from simulator.publisher import start_session
from simulator.sparkplug_profile import (
    device_birth,
    device_data,
    event_data,
    node_birth,
    node_death,
)

log = logging.getLogger(__name__)

SEQ_MODULUS = 256
WILL_QOS = 1


@dataclass(frozen=True)
class NodeOptions:
    """How every edge node connects and publishes; see ``simulator.sparkplug``."""

    host: str = "127.0.0.1"
    port: int = 1883
    qos: int = 0
    drop_every: int = 0
    primary_host: str | None = None
    client_prefix: str = "cellmon-sim"
    username: str | None = None
    password: str | None = None
    max_inflight: int = 1000
    ack_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        """Fail before connecting rather than halfway through a run."""
        if self.drop_every < 0 or self.qos not in (0, 1, 2) or self.max_inflight < 1:
            msg = "drop_every must be >= 0, qos 0, 1 or 2, max_inflight >= 1"
            raise ValueError(msg)


@dataclass
class SparkplugCounts:
    """What the edge nodes did, summed over all of them.

    ``samples``/``events``: published in a DBIRTH or DDATA; ``births``: NBIRTH + DBIRTH;
    ``drops``: DDATA not published though their seq was used (``--drop-every``);
    ``deaths``: DDEATH; ``rebirths``: NCMD rebirth requests honoured; ``lost_events``:
    events of a device between its DDEATH and DBIRTH; ``offline``: samples and events
    not sent while a node was disconnected (and QoS 0 messages the connection lost).
    """

    messages: int = 0
    samples: int = 0
    events: int = 0
    births: int = 0
    drops: int = 0
    deaths: int = 0
    rebirths: int = 0
    lost_events: int = 0
    offline: int = 0

    def summary(self) -> str:
        """One line for people."""
        return (
            f"{self.samples} samples, {self.events} events in {self.messages} messages; "
            f"births: {self.births}, drops: {self.drops}, deaths: {self.deaths}, "
            f"rebirths: {self.rebirths}, lost events: {self.lost_events}, "
            f"offline: {self.offline}"
        )


class EdgeNode:
    """An edge node of ``group`` whose devices are ``cells`` (cell id -> cell number)."""

    def __init__(
        self,
        group: str,
        node_id: str,
        cells: dict[str, int],
        options: NodeOptions,
        counts: SparkplugCounts,
        client_id: str,
    ) -> None:
        self.group = group
        self.node_id = node_id
        self._cells = cells
        self._options = options
        self._counts = counts
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.max_inflight_messages_set(options.max_inflight)
        if options.username is not None:
            self._client.username_pw_set(options.username, options.password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._window = threading.Semaphore(options.max_inflight)
        self._connected = threading.Event()
        self._refused: str | None = None
        self._rebirth_asked = threading.Event()
        self._host_online = threading.Event()
        host = options.primary_host
        self._state_topic = None if host is None else state_topic(host)
        self._bd_seq = 0
        self._seq = 0
        self._data_count = 0
        self._born_bd_seq: int | None = None  # the session the node was last born in
        self._unborn: set[str] = set()
        self._dying: set[str] = set()
        self._set_will()

    @property
    def cells(self) -> tuple[str, ...]:
        """The node's devices, in order."""
        return tuple(self._cells)

    def topic(self, kind: MessageType, device: str | None = None) -> str:
        """The node's topic for a message type, a device's if ``device`` is given."""
        return str(Topic(self.group, kind, self.node_id, device))

    # ---- session --------------------------------------------------------------------

    def __enter__(self) -> EdgeNode:
        host, port = self._options.host, self._options.port
        what = f"edge node {self.node_id}"
        start_session(self._client, host, port, self._connected, lambda: self._refused, what)
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        """A clean end says NDEATH itself (the will is only for a lost connection)."""
        try:
            if exc_type is None:
                payload = encode(None, None, node_death(self._bd_seq))
                self._publish(self.topic(MessageType.NDEATH), payload, WILL_QOS)
                self._wait_acknowledged()
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def wait_for_host(self) -> None:
        """Block until the primary host's STATE says online, if the node has one."""
        if self._options.primary_host is None:
            return
        if not self._host_online.is_set():
            log.info("%s: waiting for primary host %s", self.node_id, self._options.primary_host)
        self._host_online.wait()

    def _set_will(self) -> None:
        """The NDEATH the broker sends if this session is lost, with the session's bdSeq."""
        payload = encode(None, None, node_death(self._bd_seq))
        self._client.will_set(self.topic(MessageType.NDEATH), payload, qos=WILL_QOS)

    # ---- what the publishing thread calls -------------------------------------------

    def kill(self, cell: str) -> None:
        """Make a born device send DDEATH instead of its next sample, DBIRTH at the one after."""
        if cell not in self._unborn:
            self._dying.add(cell)

    def sample(self, cell: str, sample: Payload, ts_ns: int) -> None:
        """Publish one sample: in a DBIRTH for a device not yet born, else in a DDATA."""
        ts_ms = ts_ns // NS_PER_MS
        if not self._born_now(ts_ms):
            self._counts.offline += 1
            return
        number = self._cells[cell]
        if cell in self._unborn:
            self._unborn.discard(cell)
            self._send(MessageType.DBIRTH, cell, device_birth(number, sample, ts_ms), ts_ms)
            self._counts.births += 1
            self._counts.samples += 1
        elif cell in self._dying:
            self._dying.discard(cell)
            self._unborn.add(cell)
            self._send(MessageType.DDEATH, cell, [], ts_ms)
            self._counts.deaths += 1
        elif self._data(cell, device_data(number, sample, ts_ms), ts_ms):
            self._counts.samples += 1

    def event(self, cell: str, event: Payload, ts_ns: int) -> None:
        """Publish an event as a DDATA; a device that is not born loses it."""
        ts_ms = ts_ns // NS_PER_MS
        if not self._born_now(ts_ms):
            self._counts.offline += 1
        elif cell in self._unborn:
            self._counts.lost_events += 1
        elif self._data(cell, event_data(self._cells[cell], event, ts_ms), ts_ms):
            self._counts.events += 1

    def _born_now(self, ts_ms: int) -> bool:
        """Whether the node may publish: born in this session, or born now if connected.

        A session is known by its bdSeq, which only the MQTT thread advances (when a
        connection is lost), so a loss at any moment makes the next call birth again;
        while disconnected nothing is published at all, lest it precede the next NBIRTH.
        The devices are born one by one, each with its next sample.
        """
        bd_seq = self._bd_seq
        asked = self._rebirth_asked.is_set()
        if self._born_bd_seq == bd_seq and not asked:
            return True
        if not self._client.is_connected():
            return False
        self._rebirth_asked.clear()
        if asked and self._born_bd_seq is not None:
            self._counts.rebirths += 1
            log.info("%s: rebirth on request", self.node_id)
        self._seq = 0
        self._send(MessageType.NBIRTH, None, node_birth(bd_seq, ts_ms), ts_ms)
        self._counts.births += 1
        self._born_bd_seq = bd_seq
        self._unborn = set(self._cells)
        self._dying.clear()
        return True

    def _data(self, cell: str, metrics: list[Metric], ts_ms: int) -> bool:
        """A DDATA, unless ``drop_every`` loses it; its seq is used either way."""
        seq = self._next_seq()
        self._data_count += 1
        drop_every = self._options.drop_every
        if drop_every and self._data_count % drop_every == 0:
            self._counts.drops += 1
            return False
        self._publish(
            self.topic(MessageType.DDATA, cell), encode(ts_ms, seq, metrics, datatypes=False)
        )
        return True

    def _send(
        self, kind: MessageType, device: str | None, metrics: list[Metric], ts_ms: int
    ) -> None:
        self._publish(self.topic(kind, device), encode(ts_ms, self._next_seq(), metrics))

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % SEQ_MODULUS
        return seq

    def _publish(self, topic: str, payload: bytes, qos: int | None = None) -> None:
        """Publish within the window of unacknowledged messages, which keeps memory flat."""
        qos = self._options.qos if qos is None else qos
        if not self._window.acquire(timeout=self._options.ack_timeout_s):
            msg = f"{self.node_id}: no acknowledgement within {self._options.ack_timeout_s} s"
            raise TimeoutError(msg)
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos == 0:
            self._window.release()  # lost, as a gateway's QoS 0 message is while offline
            self._counts.offline += 1
            return
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            msg = f"publish to {topic} failed: {mqtt.error_string(info.rc)}"
            raise ConnectionError(msg)
        self._counts.messages += 1

    def _wait_acknowledged(self) -> None:
        """All publishes are acknowledged once every slot of the window is free again."""
        deadline = time.monotonic() + self._options.ack_timeout_s
        for _ in range(self._options.max_inflight):
            if not self._window.acquire(timeout=max(0.0, deadline - time.monotonic())):
                msg = f"{self.node_id}: publishes still unacknowledged"
                raise TimeoutError(msg)

    # ---- MQTT thread ----------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        else:
            client.subscribe(self.topic(MessageType.NCMD), qos=1)
            if self._state_topic is not None:
                client.subscribe(self._state_topic, qos=1)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, *_: Any) -> None:
        """The next session is a new one: the next bdSeq, in the will and the NBIRTH."""
        self._bd_seq += 1
        self._set_will()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, *_: Any) -> None:
        self._window.release()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: Any) -> None:
        if message.topic == self.topic(MessageType.NCMD):
            self._on_command(message.payload)
        elif message.topic == self._state_topic and json_online(message.payload):
            self._host_online.set()

    def _on_command(self, data: bytes) -> None:
        try:
            metrics = decode(data).metrics
        except PayloadError as err:
            log.warning("%s: NCMD ignored: %s", self.node_id, err)
            return
        if any(m.name == REBIRTH and m.value is True for m in metrics):
            log.info("%s: rebirth requested", self.node_id)
            self._rebirth_asked.set()


def json_online(data: bytes) -> bool:
    """Whether a Sparkplug 3.0 STATE payload (``{"online": true, "timestamp": …}``) says online."""
    try:
        state = json.loads(data)
    except ValueError:
        return False
    return isinstance(state, dict) and state.get("online") is True
