"""Alarm transitions published over MQTT, for a control-room HMI or a pager gateway.

The engine turns each ``alarm`` point into an alert and commits it to the journal in the
same transaction as the point, so an alert is neither lost in a crash nor raised twice by
a replayed batch. The publisher, a thread of the worker process with its own client,
sends them oldest first and deletes them once the broker acknowledged them: delivery is at
least once, so a receiver that must not double a page keys on (potline, cell, rule, ts,
state). Retained by default, so that a panel subscribing late sees each alarm's last state.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Annotated, Literal

import orjson
from pydantic import AfterValidator

from collector.config.schema import Section
from collector.journal.outbox import AlertQueue
from collector.source.mqtt_client import Connection, paho_client
from processors.model import Point

log = logging.getLogger(__name__)

POLL_S = 0.2
BATCH = 100
ACK_TIMEOUT_S = 10.0


ALERT_FIELDS = ("{potline}", "{cell}", "{rule}", "{severity}")


def _alert_topic(topic: str) -> str:
    """Alert topics are published to, so every level is literal or one of ALERT_FIELDS."""
    for level in topic.split("/"):
        if level in ALERT_FIELDS:
            continue
        if not level or any(c in level for c in "+#{}"):
            msg = (
                f"{topic!r} has level {level!r}: levels are non-empty, without + or #, and "
                f"placeholders ({', '.join(ALERT_FIELDS)}) are whole levels"
            )
            raise ValueError(msg)
    return topic


class AlertsConfig(Section):
    """Alarm transitions published over MQTT, for a control-room HMI or a pager gateway."""

    topic: Annotated[str, AfterValidator(_alert_topic)] | None = None
    qos: Literal[0, 1, 2] = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class AlertFormat:
    """The topic template and payload of an alert."""

    topic: str

    def __call__(self, point: Point) -> tuple[str, bytes]:
        """(topic, JSON payload) of an ``alarm`` point."""
        tags = dict(point.tags)
        topic = self.topic
        for key in ("potline", "cell", "rule", "severity"):
            topic = topic.replace("{" + key + "}", tags[key])
        payload = {
            "ts": point.time_ns // 1_000_000,
            **tags,
            "state": point.fields["state"],
            "value": point.fields.get("value"),  # none: cleared by a rules change
        }
        return topic, orjson.dumps(payload)


class AlertPublisher:
    """Sends the journal's alerts to the broker, in order, until stopped."""

    def __init__(self, conn: Connection, queue: AlertQueue, *, qos: int, retain: bool) -> None:
        self.queue = queue
        self.qos = qos
        self.retain = retain
        self._conn = conn
        self._client = paho_client(conn, f"{conn.client_id}-alerts", clean_session=True)
        self._client.reconnect_delay_set(1, int(conn.reconnect_max_s))

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop``; what is left stays in the journal for the next start."""
        client = self._client
        client.connect_async(self._conn.host, self._conn.port, keepalive=self._conn.keepalive_s)
        client.loop_start()
        try:
            while not stop.is_set():
                if not (client.is_connected() and self._send()):
                    stop.wait(POLL_S)
            while client.is_connected() and self._send():  # the last batch's alerts
                pass
        finally:
            client.disconnect()
            client.loop_stop()

    def _send(self) -> bool:
        """Publish a batch and wait for the broker; True when there may be more."""
        import paho.mqtt.client as mqtt  # as in ``paho_client``: not for the config's import

        rows = self.queue.take(BATCH)
        if not rows:
            return False
        sent = [self._client.publish(t, p, qos=self.qos, retain=self.retain) for _, t, p in rows]
        try:
            for info in sent:
                info.wait_for_publish(ACK_TIMEOUT_S)
        except (RuntimeError, ValueError):  # not queued: the connection dropped
            pass
        if not all(info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published() for info in sent):
            log.warning("alerts not acknowledged by the broker; they are sent again")
            return False
        self.queue.delete_upto(rows[-1][0], len(rows))
        return True
