"""The MQTT v5 client against a real Mosquitto: sessions, acknowledgements, keepalive, TLS.

Every test drives the client from its own thread as ``MqttSource`` does (``loop``), and
publishes with paho (MQTT 3.1.1), so the two ends never share code.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import mqtt5
import paho.mqtt.publish
import pytest
from paho.mqtt.enums import MQTTErrorCode

from collector.source.mqtt5_client import Mqtt5Client
from collector.source.mqtt5_wire import Message, RawTopicMessage
from collector.source.mqtt_client import refusal, tls_context
from tests.certs import DAYS, EC_KEY, TestCa, openssl
from tests.collector.source.connections import connection
from tests.servers import BrokerTls, Mosquitto

pytestmark = pytest.mark.integration

OK = MQTTErrorCode.MQTT_ERR_SUCCESS
TOPIC = "smelter/P1/C01/telemetry"


class Recorder:
    """A client and what its callbacks saw."""

    def __init__(self, client: Mqtt5Client) -> None:
        self.client = client
        self.connacks: list[Any] = []
        self.disconnects: list[Any] = []
        self.messages: list[Message | RawTopicMessage] = []
        client.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.append(rc)
        client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.append(rc)
        client.on_message = lambda _c, _u, msg: self.messages.append(msg)

    def pump(self, until: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Loop the client until ``until``; every loop must succeed."""
        deadline = time.monotonic() + timeout_s
        while not until():
            assert time.monotonic() < deadline, "timed out"
            assert self.client.loop(0.05) == OK

    def idle(self, seconds: float) -> None:
        """Loop for a while whatever comes; the connection must stay up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.client.loop(0.05) == OK

    def connect(self, broker: Mosquitto, keepalive: int = 30) -> Any:
        self.client.connect(broker.host, broker.port, keepalive)
        before = len(self.connacks)
        self.pump(lambda: len(self.connacks) > before)
        return self.connacks[-1]

    def refused(self, broker: Mosquitto) -> str:
        """Why the connection ended before a CONNACK: with TLS 1.3 the broker's refusal of
        our certificate comes after the handshake, in CONNECT's write or in the first read."""
        try:
            self.client.connect(broker.host, broker.port, 30)
        except OSError as err:
            return str(err)
        rc = OK
        while rc == OK:
            rc = self.client.loop(0.05)
        return str(self.disconnects[-1])

    def subscribe(self, topic: str = TOPIC, qos: int = 1) -> None:
        self.client.subscribe([(topic, qos)])
        self.client._subscribing and self.pump(lambda: not self.client._subscribing)


def client(receive_maximum: int = 65535, **kwargs: Any) -> Recorder:
    return Recorder(Mqtt5Client(f"t-{uuid4().hex[:8]}", receive_maximum=receive_maximum, **kwargs))


def publish(broker: Mosquitto, count: int, qos: int = 1, topic: str = TOPIC) -> None:
    messages = [{"topic": topic, "payload": f"m{k}".encode(), "qos": qos} for k in range(count)]
    paho.mqtt.publish.multiple(messages, hostname=broker.host, port=broker.port)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of the test's own, which it may freeze."""
    with Mosquitto(tmp_path / "broker") as broker:
        yield broker


def test_receives_qos_0_and_1_in_order(mosquitto: Mosquitto) -> None:
    sub = client()
    assert not sub.connect(mosquitto).is_failure
    assert sub.client.session_present is False
    sub.subscribe()
    publish(mosquitto, 3, qos=0)
    publish(mosquitto, 3, qos=1)
    sub.pump(lambda: len(sub.messages) == 6)
    assert [m.payload for m in sub.messages] == [f"m{k}".encode() for k in (0, 1, 2, 0, 1, 2)]
    assert [m.qos for m in sub.messages] == [0, 0, 0, 1, 1, 1]
    assert all(m.topic == TOPIC for m in sub.messages)
    assert all(m.mid for m in sub.messages[3:])
    sub.client.disconnect()


def test_an_unsubscribed_filter_brings_nothing_more(mosquitto: Mosquitto) -> None:
    sub = client()
    sub.connect(mosquitto)
    sub.subscribe()
    sub.subscribe("smelter/+/+/event")
    assert sub.client.unsubscribe([TOPIC]) == OK
    sub.idle(0.3)
    publish(mosquitto, 2)
    publish(mosquitto, 1, topic="smelter/P1/C01/event")
    sub.pump(lambda: len(sub.messages) == 1)
    sub.idle(0.3)
    assert [m.topic for m in sub.messages] == ["smelter/P1/C01/event"]
    sub.client.ack(sub.messages[0].mid, 1)
    sub.client.disconnect()


def test_unacknowledged_messages_come_back_and_acknowledged_ones_do_not(
    mosquitto: Mosquitto,
) -> None:
    sub = client()
    sub.connect(mosquitto)
    sub.subscribe()
    publish(mosquitto, 3)
    sub.pump(lambda: len(sub.messages) == 3)
    sub.client.disconnect()  # without acknowledging

    again = Recorder(Mqtt5Client(sub.client.client_id))
    again.connect(mosquitto)
    assert again.client.session_present is True
    again.pump(lambda: len(again.messages) == 3)
    assert [m.payload for m in again.messages] == [b"m0", b"m1", b"m2"]
    for msg in again.messages:
        assert again.client.ack(msg.mid, msg.qos) == OK
    again.idle(0.2)
    again.client.disconnect()

    third = Recorder(Mqtt5Client(sub.client.client_id))
    third.connect(mosquitto)
    assert third.client.session_present is True
    third.idle(1.0)
    assert third.messages == []
    third.client.disconnect()


def test_subscribing_again_to_a_kept_session_sends_no_retained_message_again(
    mosquitto: Mosquitto,
) -> None:
    """What lets ``MqttSource`` subscribe on every connection, kept session or not."""
    topic = f"spBv1.0/STATE/{uuid4().hex[:8]}"
    paho.mqtt.publish.single(topic, b"retained", 1, True, mosquitto.host, mosquitto.port)
    sub = client()
    sub.connect(mosquitto)
    sub.subscribe(topic)
    sub.pump(lambda: len(sub.messages) == 1)
    assert sub.messages[0].retain
    sub.client.ack(sub.messages[0].mid, 1)
    sub.client.disconnect()
    assert sub.connect(mosquitto).value == 0
    assert sub.client.session_present
    sub.subscribe(topic)
    sub.idle(0.5)
    assert len(sub.messages) == 1
    paho.mqtt.publish.single(topic, b"", 1, True, mosquitto.host, mosquitto.port)  # cleared
    sub.client.disconnect()


def test_the_broker_keeps_no_more_than_the_receive_maximum_unacknowledged(
    mosquitto: Mosquitto,
) -> None:
    """Only the first window is exact: Mosquitto 2.0.11 refills the whole quota on each
    PUBACK (eclipse-mosquitto/mosquitto#2301), so later windows can overshoot."""
    sub = client(receive_maximum=5)
    sub.connect(mosquitto)
    sub.subscribe()
    publish(mosquitto, 12)
    sub.pump(lambda: len(sub.messages) == 5)
    sub.idle(1.0)
    assert len(sub.messages) == 5
    acked = 0
    while acked < 12:
        for msg in sub.messages[acked:]:
            sub.client.ack(msg.mid, msg.qos)
        acked = len(sub.messages)
        sub.pump(lambda n=acked: len(sub.messages) > n or n == 12)
    assert [m.payload for m in sub.messages] == [f"m{k}".encode() for k in range(12)]
    sub.client.disconnect()


def test_pings_keep_a_quiet_connection_and_a_frozen_broker_is_given_up(
    own_broker: Mosquitto,
) -> None:
    sub = client()
    sub.connect(own_broker, keepalive=1)
    sub.idle(3.5)  # Mosquitto drops a client silent for 1.5 keepalives
    assert sub.disconnects == []
    process = own_broker._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5
        rc = OK
        while rc == OK and time.monotonic() < deadline:
            rc = sub.client.loop(0.05)
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert rc == MQTTErrorCode.MQTT_ERR_KEEPALIVE
    assert [str(d) for d in sub.disconnects] == ["Keep alive timeout"]
    assert sub.client.socket() is None


def test_tls_with_the_plant_ca(tmp_path: Path) -> None:
    ca = TestCa.create(tmp_path / "ca")
    cert, key = ca.issue_server(tmp_path / "server")
    with Mosquitto(tmp_path / "broker", tls=BrokerTls(ca.cert, cert, key)) as broker:
        conn = connection(broker.port, tls=True, ca_file=str(ca.cert))
        sub = client(tls=tls_context(conn))
        sub.connect(broker)
        sub.client.subscribe([(TOPIC, 1)])
        sub.client.publish(TOPIC, b"x" * 100_000, qos=1)  # many TLS records
        sub.pump(lambda: len(sub.messages) == 1 and not sub.client._unacked)
        assert sub.messages[0].payload == b"x" * 100_000
        sub.client.disconnect()


def issue_client(ca: TestCa, directory: Path) -> tuple[Path, Path]:
    """A client certificate signed by ``ca``: (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, request = directory / "c.pem", directory / "c.key", directory / "c.csr"
    extensions = directory / "c.ext"
    extensions.write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(request), "-subj", "/CN=c")
    openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-out", str(cert), "-days", DAYS, "-extfile", str(extensions),
    )  # fmt: skip
    return cert, key


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    ca = TestCa.create(tmp_path / "ca")
    cert, key = ca.issue_server(tmp_path / "server")
    client_cert, client_key = issue_client(ca, tmp_path / "client")
    tls = BrokerTls(ca.cert, cert, key)
    with Mosquitto(tmp_path / "broker", tls=tls, extra_config="require_certificate true\n") as b:
        conn = connection(
            b.port,
            tls=True,
            ca_file=str(ca.cert),
            cert_file=str(client_cert),
            key_file=str(client_key),
        )
        sub = client(tls=tls_context(conn))
        assert not sub.connect(b).is_failure
        sub.client.disconnect()
        anonymous = client(tls=tls_context(replace(conn, cert_file=None, key_file=None)))
        assert anonymous.refused(b)
        assert anonymous.connacks == []


def test_a_wrong_password_is_refused_in_the_same_words_as_paho(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker", users={"cellmon": "right"}) as broker:
        sub = client(username="cellmon", password="wrong")
        sub.client.connect(broker.host, broker.port, 30)
        rc = OK
        while rc == OK:
            rc = sub.client.loop(0.05)
        assert rc == MQTTErrorCode.MQTT_ERR_CONN_REFUSED
        (refused,) = sub.connacks
        conn = connection(broker.port, username="cellmon")
        text = refusal(refused, conn)
        assert refused.is_failure
        assert "bad username or password, or not authorised" in text
        assert "user 'cellmon'" in text


def test_the_will_is_published_when_the_connection_dies(mosquitto: Mosquitto) -> None:
    listener = client()
    listener.connect(mosquitto)
    listener.subscribe("spBv1.0/STATE/+")
    dying = client()
    dying.client.will_set("spBv1.0/STATE/host", b'{"online": false}', qos=1, retain=False)
    dying.connect(mosquitto)
    sock = dying.client.socket()
    assert sock is not None
    sock.close()  # no DISCONNECT: as if the process were killed
    listener.pump(lambda: len(listener.messages) == 1)
    assert listener.messages[0].topic == "spBv1.0/STATE/host"
    assert listener.messages[0].payload == b'{"online": false}'
    listener.client.disconnect()


def test_a_topic_that_is_not_utf8_is_delivered_with_its_bytes() -> None:
    """No broker forwards one (Mosquitto refuses it), so the bytes are handed in directly."""
    sub = client()
    good = mqtt5.PublishPacket("a/b", b"1", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=7).write()
    bad = bytearray(good)
    bad[5] = 0xFF  # the topic's "/"
    data = bytes(bad) + good
    assert sub.client._dispatch(data[:3]) == OK  # cut: kept for the next read
    assert sub.client._dispatch(data[3:]) == OK
    raw, ok = sub.messages
    assert isinstance(raw, RawTopicMessage)
    with pytest.raises(UnicodeDecodeError):
        _ = raw.topic
    assert (raw._topic, raw.payload, raw.qos, raw.mid) == (b"a\xffb", b"1", 1, 7)
    assert (ok.topic, ok.payload) == ("a/b", b"1")
