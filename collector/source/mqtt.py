"""The MQTT source: receive, decode, commit to the journal, then acknowledge.

The client's manual acknowledgement carries the "ack after durable write" guarantee: a
message is acknowledged only once its samples (or its rejection) are committed, so the
broker redelivers anything a crash interrupted and nothing it believes delivered is lost.

A commit costs about the same for one message as for hundreds, so messages are committed
in groups, by a window that grows with the rate: a group is committed once the broker's
window of unacknowledged QoS 1 messages is full (Mosquitto's 20 for paho's MQTT 3.1.1,
``ack_batch``; the Receive Maximum we ask for with MQTT v5), or when its oldest message has
waited ``ack_interval_ms``. At 400 messages a second that is a commit every fortieth
message, not one per message; draining a backlog, one per window. The interval is also how
often the process wakes at a plant's steady rates (the group fills in the socket's buffer
meanwhile): at 2,000 msg/s its CPU was 0.81 s at 50 ms, 0.63 s at 100 ms (20 s, measured).
The source drives the client's loop itself (paho's, or our v5 client's with the same
surface).

No payload can stop ingestion (contract 5.5): the message callback catches everything per
message, and a commit group that fails is committed again message by message, so the one
message the journal cannot take is dead-lettered as ``unstorable`` and acknowledged while
the others flow. Only the journal itself failing (disk full, I/O error) holds messages back,
unacknowledged, until it recovers.
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
from collections.abc import Callable, Mapping

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from collector.journal.store import JOURNAL_ERRORS, Inbox
from collector.source.deadletter import DeadLetters
from collector.source.decode import (
    Decoded,
    Decoder,
    EventRow,
    IngestConfig,
    Rejection,
    SampleRow,
)
from collector.source.mqtt5_wire import Message, RawTopicMessage
from collector.source.mqtt_client import (
    ClientFactory,
    Connection,
    FailureLog,
    SourceClient,
    connect_failure,
    refusal,
    source_client,
)
from collector.source.sparkplug.topics import state_topic

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")
MISC_EVERY_S = 1.0
JOURNAL_RETRY_S = 1.0


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
        ingest: IngestConfig,
        clock: Callable[[], int] = time.time_ns,
        client_factory: ClientFactory = source_client,
    ) -> None:
        """``client_factory`` makes the MQTT client (tests give one that records)."""
        self.conn = conn
        self.decoder = decoder
        self.inbox = inbox
        self.dead_letters = dead_letters
        # the broker sends no more unacknowledged messages than this
        self.window = conn.receive_maximum if conn.client == "mqtt5" else ingest.ack_batch
        self.ack_interval_s = ingest.ack_interval_ms / 1000
        self._oldest = 0.0  # when the oldest message of the group arrived (monotonic)
        self._clock = clock
        self._decoded = Decoded()
        self._pending: list[tuple[int, int]] = []
        # per message of the group: (topic, payload, end of its samples, events, rejections)
        self._marks: list[tuple[str, bytes, int, int, int]] = []
        self._failure = FailureLog()
        self._accepted_login = False
        self._stopping = threading.Event()
        self._next: Decoder | None = None
        self._next_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state_ms = 0  # the timestamp of this session's Sparkplug STATE
        self.connected = threading.Event()
        self.client = self._make_client(client_factory)

    def _make_client(self, factory: ClientFactory) -> SourceClient:
        client = factory(self.conn)
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
        old = self.decoder.subscriptions()
        decoder.adopt(self.decoder)
        self.decoder = decoder
        new = self.decoder.subscriptions()
        gone = sorted(set(old) - set(new))
        if gone:
            self.client.unsubscribe(gone)
        # only what changed: a repeated subscription makes the broker resend retained messages
        added = [(f, q) for f, q in new.items() if old.get(f) != q]
        if added:
            self.client.subscribe(added)
        log.info("inputs switched: subscribed to %s", ", ".join(sorted(new)))

    # the client's callbacks (run in this source's thread, inside client.loop)

    def _on_connect(
        self, _c: object, _ud: object, _flags: object, rc: object, _props: object = None
    ) -> None:
        if getattr(rc, "is_failure", False):
            self._failure.report(refusal(rc, self.conn))
            return
        self._accepted_login = True
        self._announce(online=True)
        # always: a session the broker lost needs them; the v5 client's Retain Handling 1
        # keeps a kept session's retained messages from being sent again
        self.client.subscribe(list(self.decoder.subscriptions().items()))
        self._failure.recovered()
        conn = self.conn
        log.info("connected to %s:%d as %s (%s)", conn.host, conn.port, conn.client_id, conn.client)
        self.connected.set()

    def _on_disconnect(
        self, _c: object, _ud: object, _flags: object, rc: object, _props: object = None
    ) -> None:
        self.connected.clear()
        if self._accepted_login and not self._stopping.is_set():
            log.warning("disconnected from broker: %s", rc)

    def _on_message(
        self, _c: object, _ud: object, msg: mqtt.MQTTMessage | Message | RawTopicMessage
    ) -> None:
        """Decode one message; nothing it holds may raise into the client's loop."""
        d = self._decoded
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            assert not isinstance(msg, Message)  # its topic is a str
            topic = msg._topic.decode("utf-8", errors="replace")
        payload = bytes(msg.payload)
        try:
            self.decoder.decode(topic, payload, self._clock(), d)
        except Exception as err:  # the decoder never raises; this keeps the thread alive if it did
            log.exception("decoder raised on a message from %s; dead-lettered", topic)
            reason = f"{type(err).__name__}: {err}"
            d.rejections.append(Rejection(topic, "decode_error", reason, payload))
        if not self._marks:
            self._oldest = time.monotonic()
        self._marks.append((topic, payload, len(d.samples), len(d.events), len(d.rejections)))
        for command, body in d.commands:  # Sparkplug rebirth requests: at once, QoS 0
            self.client.publish(command, body, qos=0)
        d.commands.clear()
        if msg.qos:
            self._pending.append((msg.mid, msg.qos))

    # the loop

    def _run(self) -> None:
        """Connect, receive, reconnect; the backoff grows until a login is accepted."""
        failures = 0
        while not self._stopping.is_set():
            self._accepted_login = False
            if self._connect():
                self._receive()
                self._flush()
                self._pending.clear()  # unacknowledged on a lost connection: redelivered
            failures = 0 if self._accepted_login else failures + 1
            if not self._stopping.is_set():
                self._backoff(max(failures, 1))
        try:
            self._announce(online=False)
            self.client.disconnect()
        except Exception:  # best effort on the way out
            log.debug("disconnect failed", exc_info=True)

    def _announce(self, *, online: bool) -> None:
        """The Sparkplug primary host's STATE (3.0, section 5.2), when the inputs name one.

        Retained, so an edge node sees it whenever it connects; edge nodes with
        store-and-forward send what they kept while this host was offline.
        """
        host = self.decoder.primary_host()
        if host is not None:
            body = orjson.dumps({"online": online, "timestamp": self._state_ms})
            self.client.publish(state_topic(host), body, qos=1, retain=True)

    def _connect(self) -> bool:
        host = self.decoder.primary_host()
        if host is not None:  # the will says offline with the birth's timestamp, as 3.0 asks
            self._state_ms = self._clock() // 1_000_000
            body = orjson.dumps({"online": False, "timestamp": self._state_ms})
            self.client.will_set(state_topic(host), body, qos=1, retain=True)
        try:
            self.client.connect(self.conn.host, self.conn.port, keepalive=self.conn.keepalive_s)
        except OSError as err:
            self._failure.report(connect_failure(err, self.conn))
            return False
        return True

    def _backoff(self, failures: int) -> None:
        delay = min(self.conn.reconnect_max_s, 0.25 * 2 ** min(failures, 10))
        self._stopping.wait(delay * (0.8 + 0.4 * random.random()))

    def _receive(self) -> None:
        """Read and commit until the connection drops or the source is stopped.

        Read while packets keep coming (paho reads one packet a read, the v5 client all the
        socket holds); commit once the broker's window is full, or when a read brings no
        message and the group's oldest has waited long enough. Until then the group fills
        in the socket's buffer: one wake per window, not one per message.
        """
        client = self.client
        read = client.loop_read
        next_misc = time.monotonic() + MISC_EVERY_S
        while not self._stopping.is_set():
            before = len(self._marks)
            rc = read()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                if len(self._pending) >= self.window:
                    self._flush()
                elif len(self._marks) == before:
                    wait = self._oldest + self.ack_interval_s - time.monotonic()
                    if self._marks and wait > 0:
                        self._stopping.wait(wait)
                        continue
                    self._flush()
                    self._switch()
                    rc = client.loop(MISC_EVERY_S)  # a message wakes it at once
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                if self._accepted_login:
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
        return bool(self._pending or self._marks)

    def _flush(self) -> None:
        """Commit what was decoded, then acknowledge it.

        The group is committed whole; if that fails for a reason other than the journal's
        own, it is committed message by message, and a message that still fails is
        dead-lettered as ``unstorable``. A journal failure is retried until the disk
        takes it (the messages stay unacknowledged meanwhile).
        """
        if not self._has_work():
            return
        d = self._decoded
        group = (d.samples, d.events, d.rejections, len(self._marks))
        outcome = self._commit_retrying(*group, foreign=d.foreign, extra=d.counts)
        if outcome is False:
            return  # stopping: nothing acknowledged, the broker redelivers
        if outcome is not True:
            log.warning("a commit group failed (%s); committing its messages one by one", outcome)
            if not self._commit_one_by_one():
                return
        self._acknowledge()
        self._pending.clear()
        self._marks.clear()
        d.clear()

    def _commit_one_by_one(self) -> bool:
        """Commit each message of the group alone; False when stopped before the end."""
        d = self._decoded
        s0 = e0 = r0 = 0
        foreign, extra = d.foreign, d.counts  # counters only: they go with the first message
        for topic, payload, s1, e1, r1 in self._marks:
            part = (d.samples[s0:s1], d.events[e0:e1], d.rejections[r0:r1], 1)
            outcome = self._commit_retrying(*part, dead_lettered=True, foreign=foreign, extra=extra)
            foreign, extra = 0, Counter()
            if outcome is False:
                return False
            if outcome is not True:
                log.error("a message from %s cannot be stored; dead-lettered: %s", topic, outcome)
                unstorable = Rejection(topic, "unstorable", outcome, payload)
                if self._commit_retrying([], [], [unstorable], 1) is not True:
                    return False
            s0, e0, r0 = s1, e1, r1
        return True

    def _commit_retrying(
        self,
        samples: list[SampleRow],
        events: list[EventRow],
        rejections: list[Rejection],
        messages: int,
        *,
        dead_lettered: bool = False,
        foreign: int = 0,
        extra: Mapping[str, int] | None = None,
    ) -> bool | str:
        """True once committed, False when stopped, else why the data could not be stored.

        ``dead_lettered``: the rejections were written by an earlier attempt of the group;
        ``foreign``: objects of other instances' potlines, only counted; ``extra``: other
        counters (the Sparkplug host's).
        """
        while True:
            try:
                if rejections and not dead_lettered:
                    self.dead_letters.append(rejections, self._clock())
                    dead_lettered = True
                counts = {"messages": messages, "rejected": len(rejections), "foreign": foreign}
                counts.update(Counter(f"rejected_{r.reason}" for r in rejections))
                counts.update(extra or {})
                self.inbox.append(samples, events, counts)
                return True
            except JOURNAL_ERRORS:
                log.exception("journal commit failed; retrying (messages stay unacknowledged)")
                if self._stopping.wait(JOURNAL_RETRY_S):
                    return False
            except Exception as err:
                return f"{type(err).__name__}: {err}"
