import queue
import threading
from pathlib import Path
from uuid import uuid4

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import Mosquitto, free_port

# Only bounds a wait for something that must happen; never a measured duration.
WAIT_S = 10.0


class Client:
    """A paho client on its own thread, connected on return, keeping what it receives."""

    def __init__(self, broker: Mosquitto, client_id: str, *, clean_session: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
        )
        self._paho.on_connect = lambda *_: self._connected.set()
        self._paho.on_subscribe = lambda *_: self._subscribed.set()
        self._paho.on_message = lambda _client, _userdata, message: self.messages.put(message)
        self._paho.connect(broker.host, broker.port)
        self._paho.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK from the broker"

    def subscribe(self, topic: str) -> None:
        self._paho.subscribe(topic, qos=1)
        assert self._subscribed.wait(WAIT_S), "no SUBACK from the broker"

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and return once the broker acknowledged it."""
        self._paho.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def received(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self._paho.disconnect()
        self._paho.loop_stop()


def new_client_id() -> str:
    return f"test-{uuid4().hex[:12]}"


@pytest.mark.integration
def test_mosquitto_delivers_qos1(mosquitto: Mosquitto) -> None:
    topic = f"smelter/P1/{uuid4().hex[:8]}/telemetry"
    payload = b'{"ts": 1700000000123, "cell_voltage_v": 4.213, "line_current_ka": 300.5}'
    subscriber = Client(mosquitto, new_client_id())
    publisher = Client(mosquitto, new_client_id())
    try:
        subscriber.subscribe(topic)
        publisher.publish(topic, payload)
        message = subscriber.received()
    finally:
        publisher.close()
        subscriber.close()

    assert (message.topic, message.payload, message.qos) == (topic, payload, 1)


@pytest.mark.integration
def test_queued_message_survives_broker_restart(tmp_path: Path) -> None:
    """A persistent session keeps a QoS 1 message for a client that is away, across a restart."""
    topic, payload = "smelter/P1/C01/event", b'{"ts": 1700000000123, "type": "metal_tap"}'
    client_id = new_client_id()
    with Mosquitto(tmp_path) as broker:
        away = Client(broker, client_id, clean_session=False)
        away.subscribe(topic)
        away.close()
        publisher = Client(broker, new_client_id())
        publisher.publish(topic, payload)
        publisher.close()

        broker.stop()
        broker.start()
        back = Client(broker, client_id, clean_session=False)
        try:
            message = back.received()
        finally:
            back.close()

    assert (message.topic, message.payload, message.qos) == (topic, payload, 1)


def test_free_port_never_gives_one_port_twice() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
