"""The broker connection: its config section, resolved credentials and the clients.

Shared by the source (which receives) and the alert publisher (which sends), so both reach
the broker with the same TLS and login, and both log a refused login the same quiet way.
The source has two clients to choose from (``mqtt.client``): our MQTT v5 one on the
compiled ``mqtt5`` codec, a tenth of paho's CPU per message, and paho (MQTT 3.1.1).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from pydantic import Field

from collector.config.schema import EnvName, NonEmpty, Positive, Section

if TYPE_CHECKING:  # the clients are imported where they are made: see ``paho_client``
    import paho.mqtt.client as mqtt

    from collector.source.mqtt5_client import Mqtt5Client

log = logging.getLogger(__name__)

# A refused login or an unreachable broker is logged once, then reminded of this often.
REMIND_EVERY_S = 300.0
# CONNACK reason codes of a refused login, as paho reports them for MQTT 3.1.1 and 5:
# "Bad user name or password" and "Not authorized".
LOGIN_REFUSED = frozenset({134, 135})
# QoS 1 messages the broker may send the v5 client before it acknowledges any: enough that
# a journal commit carries hundreds (one fsync'd transaction per few hundred messages, not
# per twenty), few enough that a crash has at most that many to be redelivered.
RECEIVE_MAXIMUM = 500

ClientKind = Literal["mqtt5", "paho"]


class TlsConfig(Section):
    """Files for TLS to the broker; relative paths are from the working directory."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class MqttConfig(Section):
    """The broker connection. A stable client id lets the broker keep our session while down."""

    host: NonEmpty = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: NonEmpty = "cellmon-1"
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, gt=0)
    reconnect_max_s: Positive = 30.0
    client: ClientKind = "mqtt5"
    receive_maximum: int = Field(default=RECEIVE_MAXIMUM, ge=1, le=65535)


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """How to reach the broker; secrets already resolved from the environment.

    Built from ``MqttConfig`` in ``collector.build``: its defaults are the config's.
    """

    host: str
    port: int
    client_id: str
    keepalive_s: int
    reconnect_max_s: float
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client: ClientKind = "mqtt5"
    receive_maximum: int = RECEIVE_MAXIMUM


def paho_client(
    conn: Connection, client_id: str, *, clean_session: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client with the connection's credentials and TLS, not yet connected.

    paho and mqtt5 are imported here and in ``source_client``, not with the module: the
    config imports this module for ``MqttConfig``, and the worker, which has no MQTT client
    unless alerts are published, would carry them for nothing.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

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


def tls_context(conn: Connection) -> ssl.SSLContext:
    """What paho's ``tls_set`` makes, so both clients trust and present the same.

    The broker's certificate and name are checked; our own certificate is offered if the
    config names one.
    """
    context = ssl.create_default_context(cafile=conn.ca_file)  # None: the system's CAs
    if conn.cert_file is not None:
        context.load_cert_chain(conn.cert_file, conn.key_file)
    return context


SourceClient: TypeAlias = "mqtt.Client | Mqtt5Client"


def source_client(conn: Connection) -> SourceClient:
    """The source's client: its own id, a persistent session, acknowledgements by hand."""
    if conn.client == "paho":
        return paho_client(conn, conn.client_id, clean_session=False, manual_ack=True)
    from collector.source.mqtt5_client import Mqtt5Client

    return Mqtt5Client(
        conn.client_id,
        username=conn.username,
        password=conn.password,
        tls=tls_context(conn) if conn.tls else None,
        receive_maximum=conn.receive_maximum,
    )


ClientFactory = Callable[[Connection], SourceClient]


def refusal(rc: object, conn: Connection) -> str:
    """Why the broker refused our CONNECT, in words that say what to check.

    Mosquitto answers a wrong password with "Not authorized"; the operator needs to hear
    that it is the login, and whose, to look at the right secret.
    """
    text = f"broker refused the connection: {rc}"
    if getattr(rc, "value", None) in LOGIN_REFUSED:
        who = f"user {conn.username!r}" if conn.username else "no username (anonymous)"
        text += f" (bad username or password, or not authorised; logged in with {who})"
    return text


def connect_failure(err: OSError, conn: Connection) -> str:
    """Why the connection failed before the broker could answer, TLS trust spelt out.

    ssl's own text ("[SSL: CERTIFICATE_VERIFY_FAILED] ... (_ssl.c:1006)") does not say
    which CA file was tried, and that file is what the operator has to fix.
    """
    where = f"{conn.host}:{conn.port}"
    if isinstance(err, ssl.SSLCertVerificationError):
        trusted = conn.ca_file or "the system's CA certificates"
        return (
            f"the TLS certificate of the broker at {where} could not be verified "
            f"against {trusted}: {err.verify_message}"
        )
    return f"cannot connect to {where}: {err}"


class FailureLog:
    """One log line per distinct connection failure, and a reminder while it lasts.

    A broker that refuses a wrong password answers every attempt the same way: half a
    million identical lines a day would bury everything else in the log.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: str | None = None
        self._since = 0.0
        self._attempts = 0
        self._reminded = 0.0

    def report(self, what: str) -> None:
        """Log a failure if it is new, or if it has lasted another ``REMIND_EVERY_S``."""
        now = self._clock()
        self._attempts += 1
        if what != self._last:
            self._last, self._since, self._reminded, self._attempts = what, now, now, 1
            log.error("%s (retrying with backoff)", what)
        elif now - self._reminded >= REMIND_EVERY_S:
            self._reminded = now
            minutes = (now - self._since) / 60
            log.error("still failing: %s (%d attempts in %.0f min)", what, self._attempts, minutes)

    def recovered(self) -> None:
        """Connected again: the next failure is news."""
        if self._last is not None:
            log.info("connection restored after %d failed attempts", self._attempts)
        self._last = None
