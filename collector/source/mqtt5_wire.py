"""The MQTT v5 client's wire: its socket, what it hands the source, a packet by hand.

The source was written against paho: it reads ``msg.topic``, ``msg.payload``, ``msg.qos``
and ``msg.mid``, falls back to ``msg._topic`` when the topic is not UTF-8, and judges a
refused CONNECT by ``rc.value`` and ``rc.is_failure``. These shapes let the v5 client feed
the same callbacks, so the source keeps one receive path for both clients.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from enum import IntEnum

READ_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
Socket = socket.socket
# Reason codes at or above this are failures (MQTT 5.0, section 2.4).
FAILURE = 0x80
PUBLISH = 3  # the packet type in the high nibble of the first byte


class Message:
    """A received PUBLISH under paho's attribute names (``mid`` is the packet id)."""

    __slots__ = ("mid", "payload", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, mid: int, retain: bool) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.retain = retain


class RawTopicMessage:
    """A PUBLISH whose topic is not UTF-8, which a broker should never forward.

    ``topic`` raises ``UnicodeDecodeError`` as paho's does, so the source takes its own
    path for such topics (dead-letters them under a repaired name) instead of crashing.
    """

    __slots__ = ("_topic", "mid", "payload", "qos", "retain")

    def __init__(self, topic: bytes, payload: bytes, qos: int, mid: int, retain: bool) -> None:
        self._topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.retain = retain

    @property
    def topic(self) -> str:
        """Raises, as the source expects of such a topic."""
        return self._topic.decode()


@dataclass(frozen=True, slots=True)
class ReasonCode:
    """A CONNACK or DISCONNECT reason as paho gives it: the number, failure or not, words."""

    value: int
    text: str

    @classmethod
    def of(cls, code: IntEnum) -> ReasonCode:
        """From the codec's enum: ``NOT_AUTHORIZED`` reads "Not authorized", as in paho."""
        return cls(int(code), code.name.replace("_", " ").capitalize())

    @property
    def is_failure(self) -> bool:
        """Reason codes from 0x80 up are failures (MQTT 5.0, 2.4)."""
        return self.value >= FAILURE

    def __str__(self) -> str:
        return self.text


# why a connection ended, in the words on_disconnect hears
BROKER_CLOSED = ReasonCode(FAILURE, "connection closed by the broker")
KEEPALIVE_TIMEOUT = ReasonCode(0x8D, "Keep alive timeout")
NORMAL = ReasonCode(0, "Normal disconnection")
MALFORMED = ReasonCode(0x81, "Malformed packet")
PROTOCOL_ERROR = ReasonCode(0x82, "Protocol error")


def connection_lost(err: OSError) -> ReasonCode:
    """The reason of a connection the socket reported broken."""
    return ReasonCode(FAILURE, f"connection lost: {err}")


def open_socket(host: str, port: int, tls: ssl.SSLContext | None) -> Socket:
    """A connected socket, TLS handshake done: OSError (ssl's among them) if not."""
    raw = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        return raw
    try:
        sock = tls.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
    except OSError:
        raw.close()
        raise
    try:
        sock.do_handshake()
    except OSError:
        sock.close()
        raise
    return sock


def recv(sock: Socket) -> tuple[list[bytes], ReasonCode | None]:
    """What the socket holds (``READ_BYTES`` or so), and why it ended if it did."""
    chunks: list[bytes] = []
    size = 0
    try:
        # a TLS read gives one record at most: read on while the socket has more
        while size < READ_BYTES or _pending(sock):
            data = sock.recv(READ_BYTES)
            if not data:
                return chunks, BROKER_CLOSED
            chunks.append(data)
            size += len(data)
            if len(data) < READ_BYTES and not isinstance(sock, ssl.SSLSocket):
                break
    except WOULD_BLOCK:
        pass
    except OSError as err:
        return chunks, connection_lost(err)
    return chunks, None


def _pending(sock: Socket) -> int:
    """Bytes TLS has decrypted and holds back from ``select``: they must be read now."""
    return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    """A Variable Byte Integer at ``pos``: (value, position after it); IndexError if cut."""
    value = shift = 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    msg = "malformed variable byte integer"
    raise ValueError(msg)


def bad_topic(data: memoryview, pos: int) -> bool:
    """Whether the packet at ``pos`` is a PUBLISH whose whole topic is there and not UTF-8.

    The codec must never see one: it panics (pyo3 0.28) instead of raising, and leaves an
    unraisable exception behind. A cut packet is False: the codec waits for the rest.
    """
    if data[pos] >> 4 != PUBLISH:
        return False
    try:  # a remaining length of one or two bytes inline: this runs for every packet
        if data[pos + 1] < 0x80:
            start = pos + 2
        elif data[pos + 2] < 0x80:
            start = pos + 3
        else:
            _, start = _varint(data, pos + 1)
        size = data[start] << 8 | data[start + 1]
    except (IndexError, ValueError):
        return False
    topic = data[start + 2 : start + 2 + size].tobytes()
    if len(topic) < size or topic.isascii():
        return False
    try:
        topic.decode()
    except UnicodeDecodeError:
        return True
    return False


def raw_publish(data: memoryview) -> tuple[RawTopicMessage, int] | None:
    """A PUBLISH at the start of ``data`` parsed by hand: (message, its length), None if cut.

    Only for a PUBLISH the codec cannot take, which keeps the topic as bytes: ending the
    connection instead would have the broker send the message again on every reconnect.
    ValueError when it is not a PUBLISH either.
    """
    first = data[0]
    if first >> 4 != PUBLISH:
        msg = f"not a PUBLISH: first byte {first:#04x}"
        raise ValueError(msg)
    length, pos = _varint(data, 1)
    end = pos + length
    if end > len(data):
        return None
    size = int.from_bytes(data[pos : pos + 2], "big")
    topic = bytes(data[pos + 2 : pos + 2 + size])
    pos += 2 + size
    qos = (first >> 1) & 3
    mid = 0
    if qos:
        mid = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
    properties, pos = _varint(data, pos)
    pos += properties
    if pos > end:
        msg = "PUBLISH shorter than its header"
        raise ValueError(msg)
    return RawTopicMessage(topic, bytes(data[pos:end]), qos, mid, bool(first & 1)), end
