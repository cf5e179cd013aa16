"""The MQTT source: receive, decode, commit to the journal, then acknowledge.

paho's manual acknowledgement carries the "ack after durable write" guarantee: a message
is acknowledged only once its samples (or its rejection) are committed, so the broker
redelivers anything a crash interrupted and nothing it believes delivered is lost.

Brokers bound the unacknowledged QoS 1 messages in flight to a client (Mosquitto: 20 by
default), so the source cannot wait for large batches. It drives paho's loop itself and
commits whenever the socket has nothing more to read right now, or ``ack_batch`` messages
are pending: small groups under a slow trickle, full groups at full speed.
"""

from __future__ import annotations

import logging
import random
import select
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from collector.deadletter import DeadLetters
from collector.decode import Decoded, Decoder
from collector.journal import Inbox
from collector.topics import TopicTemplate

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")
MISC_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach the broker; secrets already resolved from the environment."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    reconnect_max_s: float = 30.0


def paho_client(
    conn: Connection, client_id: str, *, clean_session: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client with the connection's credentials and TLS, not yet connected."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if conn.username is not None:
        client.username_pw_set(conn.username, conn.password)
    if conn.tls:  # with no ca_file, the system's CA certificates
        client.tls_set(ca_certs=conn.ca_file, certfile=conn.cert_file, keyfile=conn.key_file)
    return client


class MqttSource:
    """Subscribes to the input templates and feeds the journal's inbox.

    Call order: ``start()`` once, then ``stop()`` once. ``stop`` stops reading, commits and
    acknowledges what was already received, and disconnects; messages still in the socket
    stay unacknowledged and come back with the persistent session.
    """

    def __init__(
        self,
        conn: Connection,
        decoder: Decoder,
        inbox: Inbox,
        dead_letters: DeadLetters,
        *,
        ack_batch: int = 20,
        ack_interval_ms: float = 5.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.conn = conn
        self.decoder = decoder
        self.inbox = inbox
        self.dead_letters = dead_letters
        self.ack_batch = ack_batch
        self.ack_interval_s = ack_interval_ms / 1000
        self._clock = clock
        self._decoded = Decoded()
        self._pending: list[tuple[int, int]] = []
        self._messages = 0
        self._stopping = threading.Event()
        self._next: Decoder | None = None
        self._next_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = paho_client(self.conn, self.conn.client_id, clean_session=False, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect (retrying with backoff) and receive in a background thread."""
        self._thread = threading.Thread(target=self._run, name="mqtt-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop receiving; everything received so far is committed and acknowledged."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def templates(self) -> list[TopicTemplate]:
        """The input topic templates in force: the decoder's."""
        return self.decoder.router.templates

    def reconfigure(self, decoder: Decoder) -> None:
        """Switch to new input rules between two messages (from any thread).

        What was decoded with the old rules is committed first, so each message is decoded
        once, by the rules in force when it arrived.
        """
        with self._next_lock:
            self._next = decoder

    def _switch(self) -> None:
        if self._next is None:  # the common case, without the lock
            return
        with self._next_lock:
            decoder, self._next = self._next, None
        if decoder is None:
            return
        self._flush()
        old = {t.subscription: t.qos for t in self.templates}
        self.decoder = decoder
        new = {t.subscription: t.qos for t in self.templates}
        gone = sorted(set(old) - set(new))
        if gone:
            self.client.unsubscribe(gone)
        # only what changed: a repeated subscription makes the broker resend retained messages
        added = [(f, q) for f, q in new.items() if old.get(f) != q]
        if added:
            self.client.subscribe(added)
        log.info("inputs switched: subscribed to %s", ", ".join(sorted(new)))

    # paho callbacks (run in this source's thread, inside client.loop)

    def _on_connect(
        self, client: mqtt.Client, _ud: object, _flags: object, rc: object, _props: object = None
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.error("broker refused the connection: %s", rc)
            return
        client.subscribe([(t.subscription, t.qos) for t in self.templates])
        log.info("connected to %s:%d as %s", self.conn.host, self.conn.port, self.conn.client_id)
        self.connected.set()

    def _on_disconnect(
        self, _c: object, _ud: object, _flags: object, rc: object, _props: object = None
    ) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from broker: %s", rc)

    def _on_message(self, _c: object, _ud: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", errors="replace")
        self.decoder.decode(topic, bytes(msg.payload), self._clock(), self._decoded)
        self._messages += 1
        if msg.qos:
            self._pending.append((msg.mid, msg.qos))

    # the loop

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not self._connect():
                failures += 1
                self._backoff(failures)
                continue
            failures = 0
            self._receive()
            self._flush()
            self._pending.clear()  # unacknowledged on a lost connection: redelivered
            if not self._stopping.is_set():
                self._backoff(1)
        try:
            self.client.disconnect()
        except Exception:  # best effort on the way out
            log.debug("disconnect failed", exc_info=True)

    def _connect(self) -> bool:
        try:
            self.client.connect(self.conn.host, self.conn.port, keepalive=self.conn.keepalive_s)
        except OSError as err:
            log.warning("cannot connect to %s:%d: %s", self.conn.host, self.conn.port, err)
            return False
        return True

    def _backoff(self, failures: int) -> None:
        delay = min(self.conn.reconnect_max_s, 0.25 * 2 ** min(failures, 10))
        self._stopping.wait(delay * (0.8 + 0.4 * random.random()))

    def _receive(self) -> None:
        """Read and commit until the connection drops or the source is stopped.

        Read one packet at a time while packets keep coming; when a read brings no
        message, the broker is waiting for our acknowledgements (or has nothing to send),
        so commit, then wait on the socket.
        """
        client = self.client
        read = client.loop_read
        next_misc = time.monotonic() + MISC_EVERY_S
        while not self._stopping.is_set():
            before = self._messages
            rc = read()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                if self._messages == before:
                    self._flush()
                    self._switch()
                    rc = client.loop(self.ack_interval_s)
                elif len(self._pending) >= self.ack_batch:
                    self._flush()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("connection lost: %s", mqtt.error_string(rc))
                return
            if time.monotonic() >= next_misc:
                next_misc = time.monotonic() + MISC_EVERY_S
                client.loop_misc()  # keepalive pings while data never stops
                self._switch()  # rules reloaded while data never stops

    def _acknowledge(self) -> None:
        """Send the PUBACKs of the pending messages, in one write when we can.

        paho sends each acknowledgement with its own system call (and one more to wake a
        loop thread we do not use): a third of the MQTT thread's time at full speed. When
        paho has nothing queued (``want_write`` is false) no packet of its can be cut in
        two, so the PUBACKs (0x40, length 2, packet id) go out together.
        """
        pending = self._pending
        sock = self.client.socket()
        if sock is None or self.client.want_write() or any(q != 1 for _, q in pending):
            for mid, qos in pending:
                self.client.ack(mid, qos)
            return
        data = b"".join([_PUBACK.pack(0x40, 2, mid) for mid, _ in pending])
        while data:
            try:
                data = data[sock.send(data) :]
            except (BlockingIOError, ssl.SSLWantWriteError):
                select.select([], [sock], [], 1.0)
            except OSError as err:  # the connection is gone: the broker redelivers
                log.warning("acknowledgement not sent: %s", err)
                return

    def _has_work(self) -> bool:
        d = self._decoded
        return bool(self._pending or d.samples or d.events or d.rejections)

    def _flush(self) -> None:
        """Commit what was decoded, then acknowledge it; retried until the disk takes it."""
        if not self._has_work():
            return
        d = self._decoded
        while True:
            try:
                now = self._clock()
                if d.rejections:
                    self.dead_letters.append(d.rejections, now)
                counts = {"messages": self._messages, "rejected": len(d.rejections)}
                counts.update(Counter(f"rejected_{r.reason}" for r in d.rejections))
                self.inbox.append(d.samples, d.events, counts)
                break
            except Exception:
                log.exception("journal commit failed; retrying (messages stay unacknowledged)")
                if self._stopping.wait(1.0):
                    return
        self._acknowledge()
        self._pending.clear()
        self._messages = 0
        d.clear()
