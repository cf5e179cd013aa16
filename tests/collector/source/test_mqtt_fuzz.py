"""Fuzzing the live path: bad messages through ``MqttSource`` into the real journal.

``test_decode_fuzz`` holds the decoder to its contract message by message; here runs of
hostile messages go the way ``cellmon run`` takes them: paho's callback, the source's own
receive loop (``_receive``), the real decoder, the real SQLite inbox and the real
dead-letter file, in a temporary state directory. Whatever arrives, the source neither
raises nor stops; every message is committed and acknowledged; each rejection has a reason
of the contract's list and a dead letter; and the journal's counters add up:
``received = accepted + rejected + duplicates``, ``rejected`` is the sum of the
``rejected_<reason>`` counters, and every object of every message is counted once
(``received`` or ``foreign``). A redelivery of the whole run is all duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from collector.journal import store as journal
from collector.source.deadletter import DeadLetters
from collector.source.decode import Decoder, IngestConfig
from collector.source.mqtt import MqttSource
from collector.source.payload import MAX_DEPTH, depth
from tests.collector.source.test_decode import contract_decoder
from tests.collector.source.test_decode_fuzz import (
    MESSAGE_REASONS,
    NOW_MS,
    NOW_NS,
    OBJECT_REASONS,
    as_json,
    documents,
    objects_in,
)
from tests.collector.source.test_mqtt import RecordingClient, connection

CONTRACT_REASONS = (MESSAGE_REASONS | OBJECT_REASONS) - {"decode_error"}
TOPICS = [
    "smelter/P1/C01/telemetry",
    "smelter/P1/C01/event",
    "smelter/P1/C02/telemetry",
    "smelter/P2/C01/telemetry",  # another instance's potline: foreign, counted only
    "smelter/P1/C 1/telemetry",  # not a topic of the inputs
    "other/P1/C01/telemetry",
]
LIMITS = IngestConfig(max_payload_bytes=16 * 1024, ack_batch=20)

# Good objects too, from a small set of timestamps, so that runs repeat samples.
good = st.builds(
    lambda k, volts, kind: (
        {"ts": NOW_MS - 1000 * k, "cell_voltage_v": volts, "line_current_ka": 300.0}
        if kind == "telemetry"
        else {"ts": NOW_MS - 1000 * k, "type": "metal_tap", "metal_kg": volts}
    ),
    st.one_of(st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=10**8)),
    st.sampled_from([4.2, 4.3]),
    st.sampled_from(["telemetry", "event"]),
)
payloads = st.one_of(
    good.map(as_json),
    st.lists(good, min_size=1, max_size=3).map(as_json),
    st.lists(st.one_of(good, documents), max_size=5).map(as_json),
    documents.map(as_json),
    st.binary(max_size=300),
    st.integers(min_value=1, max_value=3 * MAX_DEPTH).map(lambda n: b'{"ts":1,"d":' * n),
)
messages = st.lists(
    st.tuples(st.sampled_from([*TOPICS[:3], *TOPICS]), payloads, st.sampled_from([0, 1, 1, 2])),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def inbox(state: Path) -> journal.Inbox:
    return journal.Inbox(journal.connect_inbox(state))


@pytest.fixture(scope="module")
def letters(state: Path) -> Iterator[DeadLetters]:
    store = DeadLetters(state / "deadletter.jsonl", LIMITS.dead_letter_max_bytes)
    yield store
    store.close()


def decoder() -> Decoder:
    return contract_decoder(LIMITS)


def run(
    inbox: journal.Inbox, letters: DeadLetters, script: list[tuple[str, bytes, int]], first: int
) -> tuple[dict[str, int], int, list[int]]:
    """Feed the script through the source's receive loop.

    Returns the counters' growth, the dead letters written and the PUBACKed message ids.
    """
    msgs = []
    for k, (topic, payload, qos) in enumerate(script):
        msg = mqtt.MQTTMessage(first + k, topic.encode())
        msg.payload = payload
        msg.qos = qos
        msgs.append(msg)
    log: list[tuple[str, int]] = []
    client = RecordingClient(msgs, log)
    source = MqttSource(
        connection(1),
        decoder(),
        inbox,
        letters,
        ingest=LIMITS,
        clock=lambda: NOW_NS,
        client_factory=lambda _conn: client,  # type: ignore[arg-type,return-value]
    )
    client.source = source
    before = journal.read_counters(inbox._conn)
    lines_before = letters.path.read_bytes().count(b"\n")
    source._receive()  # must not raise
    source._flush()
    after = journal.read_counters(inbox._conn)
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    written = letters.path.read_bytes().count(b"\n") - lines_before
    return grew, written, [mid for what, mid in log if what == "puback"]


def objects(topic: str, payload: bytes) -> int:
    """How many objects the contract counts in a message: one when it is refused whole."""
    whole = (
        topic not in TOPICS[:4]
        or len(payload) > LIMITS.max_payload_bytes
        or (depth(payload) > MAX_DEPTH)
    )
    count = None if whole else objects_in(payload)
    return 1 if count is None else count


def check_counts(grew: dict[str, int], written: int, script: list[tuple[str, bytes, int]]) -> None:
    assert grew.get("messages", 0) == len(script)
    received, accepted = grew.get("received", 0), grew.get("accepted", 0)
    rejected, duplicates = grew.get("rejected", 0), grew.get("duplicates", 0)
    assert received == accepted + rejected + duplicates
    by_reason = {
        k.removeprefix("rejected_"): n for k, n in grew.items() if k.startswith("rejected_")
    }
    assert set(by_reason) <= CONTRACT_REASONS, by_reason
    assert sum(by_reason.values()) == rejected
    assert written == rejected  # each rejection dead-lettered, once
    assert received + grew.get("foreign", 0) == sum(objects(t, p) for t, p, _ in script)


# Drawing runs of hostile documents dominates: a third of the profile's count of runs.
@settings(max_examples=max(50, settings().max_examples // 3))
@given(messages)
def test_fuzz_bad_messages_through_the_source(
    inbox: journal.Inbox, letters: DeadLetters, script: list[tuple[str, bytes, int]]
) -> None:
    grew, written, acked = run(inbox, letters, script, first=1)
    check_counts(grew, written, script)
    for counter in ("accepted", "rejected", "duplicates", "foreign"):
        if grew.get(counter):
            event(f"some {counter}")
    assert sorted(acked) == [1 + k for k, (_, _, qos) in enumerate(script) if qos]
    # QoS 1 redelivers the whole run after a reconnect: nothing is accepted twice
    again, written_again, _ = run(inbox, letters, script, first=1)
    check_counts(again, written_again, script)
    assert again.get("accepted", 0) == 0
    assert again.get("duplicates", 0) == grew.get("accepted", 0) + grew.get("duplicates", 0)
    assert again.get("rejected", 0) == grew.get("rejected", 0)
