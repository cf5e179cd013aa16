"""The embedded broker serves what cellmon's source relies on, to real paho clients."""

from __future__ import annotations

import queue
import socket
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.commands.embedded_broker import EmbeddedBroker

WAIT_S = 10.0
TOPIC = "smelter/P1/C001/telemetry"
SUBSCRIPTION = "smelter/+/+/telemetry"


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


class Subscriber:
    """As cellmon's source connects: stable id, persistent session, QoS 1, manual acks."""

    def __init__(self, port: int, client_id: str = "cellmon-test") -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connacks: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.session_present = self.connacks.get(timeout=WAIT_S)

    def subscribe(self) -> None:
        granted: queue.Queue[list[int]] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.put(
            [c.value for c in codes]
        )
        self.client.subscribe(SUBSCRIPTION, qos=1)
        assert granted.get(timeout=WAIT_S) == [1]

    def receive(self, count: int) -> list[bytes]:
        # Acknowledged here, after the callback returned, as cellmon does after its commit.
        taken = [self.messages.get(timeout=WAIT_S) for _ in range(count)]
        for msg in taken:
            self.client.ack(msg.mid, msg.qos)
        assert {(msg.topic, msg.qos) for msg in taken} == {(TOPIC, 1)}
        return [bytes(msg.payload) for msg in taken]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, _c: object, _u: object, flags: object, reason: object, _p: object):
        self.connacks.put(bool(flags.session_present))  # type: ignore[attr-defined]  # paho's untyped flags

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(msg)


def publish(port: int, payloads: list[bytes]) -> None:
    """Publish at QoS 1 and return once the broker has acknowledged every message."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="controller-test")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(TOPIC, payload, qos=1).wait_for_publish(WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


def test_port_zero_picks_a_free_port_that_accepts_connections(broker: EmbeddedBroker) -> None:
    assert broker.port != 0
    with socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT_S):
        pass


def test_manually_acknowledged_qos1_subscriber_receives_what_is_published(
    broker: EmbeddedBroker,
) -> None:
    subscriber = Subscriber(broker.port)
    assert broker.subscriptions("cellmon-test") == set()
    subscriber.subscribe()
    assert broker.subscriptions("cellmon-test") == {SUBSCRIPTION}
    sent = [b'{"n": %d}' % i for i in range(50)]

    publish(broker.port, sent)

    assert subscriber.receive(50) == sent
    subscriber.close()


def test_persistent_session_keeps_subscription_and_queues_while_away(
    broker: EmbeddedBroker,
) -> None:
    first = Subscriber(broker.port)
    assert first.session_present is False
    first.subscribe()
    first.close()

    publish(broker.port, [b"while-away-1", b"while-away-2", b"while-away-3"])

    again = Subscriber(broker.port)  # same client id, no new SUBSCRIBE
    assert again.session_present is True
    assert again.receive(3) == [b"while-away-1", b"while-away-2", b"while-away-3"]
    again.close()


def test_stop_closes_the_port() -> None:
    broker = EmbeddedBroker()
    broker.start()
    port = broker.port
    broker.stop()
    broker.stop()  # a second stop is harmless

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
