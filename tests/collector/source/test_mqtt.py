"""The MQTT source's commit path: what it does with a message the journal cannot take.

The source is driven through paho's own callback with real ``MQTTMessage`` objects and a
real SQLite journal; only the journal's refusal of one row is injected, since no payload
that passes the decoder can provoke it any more.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from collector.journal import store as journal
from collector.source.deadletter import DeadLetters, read_dead_letters
from collector.source.decode import Decoder, EventRow, IngestConfig, SampleRow
from collector.source.mqtt import MqttSource
from collector.source.mqtt_client import ClientKind
from collector.source.topics import TopicRouter, compile_template
from tests.collector.source.connections import connection
from tests.harness import wait_for
from tests.servers import Mosquitto, find_binary

T0_MS = 1_709_251_200_000
NOW_NS = (T0_MS + 3_600_000) * 1_000_000

OWNED = frozenset({"P1"})  # the potlines the instance owns (contract 5.1)


class PoisonedInbox(journal.Inbox):
    """A real inbox that raises, as an encoding bug would, on events of type ``poison``."""

    def __init__(self, conn: sqlite3.Connection, error: type[Exception] = TypeError) -> None:
        super().__init__(conn)
        self.error = error
        self.attempts = 0

    def append(
        self, samples: list[SampleRow], events: list[EventRow], counts: Any
    ) -> journal.Appended:
        self.attempts += 1
        if any(e[3] == "poison" for e in events):
            msg = "cannot encode this event"
            raise self.error(msg)
        return super().append(samples, events, counts)


def message(mid: int, topic: str, payload: dict[str, Any]) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid, topic.encode())
    msg.payload = orjson.dumps(payload)
    msg.qos = 1
    return msg


def sample(k: int) -> dict[str, Any]:
    return {"ts": T0_MS + k * 1000, "cell_voltage_v": 4.2, "line_current_ka": 300.0}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def letters(state: Path) -> Iterator[DeadLetters]:
    store = DeadLetters(state / "deadletter.jsonl", 4096)
    yield store
    store.close()


def make_source(letters: DeadLetters, inbox: journal.Inbox) -> MqttSource:
    router = TopicRouter(
        [
            compile_template("smelter/{potline}/{cell}/telemetry", "telemetry"),
            compile_template("smelter/{potline}/{cell}/event", "event"),
        ],
        OWNED,
    )
    source = MqttSource(
        connection(1),
        Decoder(router, IngestConfig()),
        inbox,
        letters,
        ingest=IngestConfig(),
        clock=lambda: NOW_NS,
    )
    acked: list[int] = []
    # the broker's side is not under test here: the PUBACKs are recorded, not sent
    source._acknowledge = lambda: acked.extend(mid for mid, _ in source._pending)
    source.acked = acked
    return source


def test_a_message_the_journal_refuses_is_dead_lettered_and_the_others_flow(
    state: Path, letters: DeadLetters
) -> None:
    inbox = PoisonedInbox(journal.connect_inbox(state))
    source = make_source(letters, inbox)
    poison = {"ts": T0_MS, "type": "poison", "note": "x"}
    msgs = [message(k + 1, "smelter/P1/C01/telemetry", sample(k)) for k in range(5)]
    msgs.append(message(6, "smelter/P1/C01/event", poison))
    msgs.append(message(7, "smelter/P1/C01/telemetry", {"ts": "yesterday"}))
    msgs += [message(k + 3, "smelter/P1/C02/telemetry", sample(k)) for k in range(5, 10)]
    for msg in msgs:
        source._on_message(None, None, msg)
    source._flush()

    store = journal.Store(journal.connect_inbox(state), journal.connect_journal(state))
    rows = store.read(0, 100)
    assert [ts // 1_000_000 for ts in rows.ts] == [T0_MS + k * 1000 for k in range(10)]
    letters = read_dead_letters(state / "deadletter.jsonl")
    assert [d["reason"] for d in letters] == ["bad_ts", "unstorable"]
    assert letters[1]["detail"] == "TypeError: cannot encode this event"
    assert orjson.loads(letters[1]["payload"]) == poison
    assert sorted(source.acked) == list(range(1, 13))
    counters = store.counters()
    assert counters["messages"] == 12
    assert counters["accepted"] == 10
    assert counters["rejected"] == 2
    assert counters["rejected_unstorable"] == 1
    assert counters["received"] == counters["accepted"] + counters["rejected"]


def test_a_journal_failure_keeps_the_messages_unacknowledged(
    state: Path, letters: DeadLetters
) -> None:
    inbox = PoisonedInbox(journal.connect_inbox(state), sqlite3.OperationalError)
    source = make_source(letters, inbox)
    source._on_message(
        None, None, message(1, "smelter/P1/C01/event", {"ts": T0_MS, "type": "poison"})
    )
    source._stopping.set()  # the retry loop gives up only because the source stops
    source._flush()
    assert source.acked == []
    assert read_dead_letters(state / "deadletter.jsonl") == []
    assert inbox.attempts == 1


def test_the_message_callback_survives_a_decoder_that_raises(
    state: Path, letters: DeadLetters
) -> None:
    source = make_source(letters, journal.Inbox(journal.connect_inbox(state)))

    def broken(*_: object) -> None:
        msg = "decoder bug"
        raise RuntimeError(msg)

    source.decoder.decode = broken
    source._on_message(None, None, message(1, "smelter/P1/C01/telemetry", sample(0)))
    source._flush()
    letters = read_dead_letters(state / "deadletter.jsonl")
    assert [(d["reason"], d["detail"]) for d in letters] == [
        ("decode_error", "RuntimeError: decoder bug")
    ]
    assert source.acked == [1]


@pytest.mark.integration
@pytest.mark.parametrize("client", ["mqtt5", "paho"])
def test_a_refused_login_backs_off_and_is_logged_once(
    tmp_path: Path,
    state: Path,
    letters: DeadLetters,
    caplog: pytest.LogCaptureFixture,
    client: ClientKind,
) -> None:
    """Mosquitto with a password file: the TCP connect succeeds, the CONNACK refuses."""
    passwords = tmp_path / "passwords"
    passwd = find_binary("mosquitto_passwd")
    subprocess.run([passwd, "-b", "-c", str(passwords), "cellmon", "right"], check=True)
    settings = f"allow_anonymous false\npassword_file {passwords}\n"
    with Mosquitto(tmp_path / "broker", extra_config=settings) as broker:
        router = TopicRouter(
            [compile_template("smelter/{potline}/{cell}/telemetry", "telemetry")], OWNED
        )
        conn = connection(broker.port, client, username="cellmon", password="wrong")
        source = MqttSource(
            conn,
            Decoder(router, IngestConfig()),
            journal.Inbox(journal.connect_inbox(state)),
            letters,
            ingest=IngestConfig(),
        )
        failures: list[int] = []
        backoff = source._backoff

        def recorded(n: int) -> None:
            failures.append(n)
            backoff(n)

        source._backoff = recorded
        with caplog.at_level(logging.INFO, logger="collector.source"):
            source.start()
            wait_for(lambda: len(failures) >= 4, 30, lambda: str(failures))
            source.stop()
    assert failures[:4] == [1, 2, 3, 4]  # each refusal lengthens the wait
    assert not source.connected.is_set()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert "Not authorized" in refusals[0] or "not authorised" in refusals[0].lower()


class RecordingClient:
    """What ``MqttSource._receive`` asks of paho, replayed from a script of messages.

    ``loop_read`` delivers the next message of the script through the source's own
    callback, as paho does; each PUBACK, sent through paho or written to the socket in
    one go, is logged beside the journal's commits.
    """

    def __init__(self, script: list[mqtt.MQTTMessage], log: list[tuple[str, int]]) -> None:
        self.script = script
        self.log = log
        self.on_message: Any = None
        self.source: MqttSource | None = None

    def loop_read(self) -> mqtt.MQTTErrorCode:
        if self.script:
            self.on_message(self, None, self.script.pop(0))
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop(self, _timeout: float) -> mqtt.MQTTErrorCode:
        if not self.script:
            assert self.source is not None
            self.source._stopping.set()
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_misc(self) -> mqtt.MQTTErrorCode:
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def socket(self) -> RecordingClient:
        return self

    def want_write(self) -> bool:
        return False

    def send(self, data: bytes) -> int:
        for offset in range(0, len(data), 4):  # PUBACK: 0x40, 2, packet id
            self.log.append(("puback", int.from_bytes(data[offset + 2 : offset + 4], "big")))
        return len(data)

    def ack(self, mid: int, _qos: int) -> None:
        self.log.append(("puback", mid))


class LoggedInbox(journal.Inbox):
    def __init__(self, conn: sqlite3.Connection, log: list[tuple[str, int]]) -> None:
        super().__init__(conn)
        self.log = log
        self.committed = 0

    def append(
        self, samples: list[SampleRow], events: list[EventRow], counts: Any
    ) -> journal.Appended:
        result = super().append(samples, events, counts)
        self.committed += counts["messages"]
        self.log.append(("commit", self.committed))
        return result


def test_no_puback_leaves_before_the_commit_of_its_message(
    state: Path, letters: DeadLetters
) -> None:
    """Message k (mid k) may be acknowledged only once k messages are committed."""
    log: list[tuple[str, int]] = []
    script = [message(k, "smelter/P1/C01/telemetry", sample(k)) for k in range(1, 58)]
    client = RecordingClient(script, log)
    router = TopicRouter(
        [compile_template("smelter/{potline}/{cell}/telemetry", "telemetry")], OWNED
    )
    source = MqttSource(
        connection(1, "paho"),  # the broker's window: ack_batch, 20
        Decoder(router, IngestConfig()),
        LoggedInbox(journal.connect_inbox(state), log),
        letters,
        ingest=IngestConfig(),
        clock=lambda: NOW_NS,
        client_factory=lambda _conn: client,
    )
    client.source = source
    source._receive()
    source._flush()  # as ``_run`` does when the connection ends
    committed = 0
    acked = []
    for what, n in log:
        if what == "commit":
            committed = n
        else:
            assert n <= committed, f"PUBACK of message {n} sent with {committed} committed"
            acked.append(n)
    assert sorted(acked) == list(range(1, 58))
    assert committed == 57
    assert 3 <= sum(1 for what, _ in log if what == "commit") <= 57
