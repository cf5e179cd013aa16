"""An MQTT 3.1.1 broker inside the process, so the demo and tests need no server installed.

amqtt's broker runs on its own asyncio loop in a background thread. It only ever touches
memory: no persistence database, no password file, no ``$SYS`` publisher, no packet log.

Three amqtt 0.12 behaviours shape or limit this module:

* Its ``AnonymousAuthPlugin`` marks every session it admits as anonymous, and amqtt then
  neither queues QoS 1 messages for an anonymous session while it is disconnected nor
  keeps it at all: ``clean_session=False`` would silently act like a clean session.
  ``AdmitAll`` admits everyone without that mark, so persistent sessions persist.
* A TCP listener bound to port 0 keeps its real port in a private attribute. The broker
  is therefore given an ``external`` listener and fed connections from our own asyncio
  server, whose port is public (``Broker.external_connected`` is amqtt's API for that).
* A QoS 1 message sent to a subscriber but not yet acknowledged when it disconnects, or
  not acknowledged within 5 s, is dropped, not redelivered. Messages published while the
  subscriber is away are queued and delivered, but cellmon's "acknowledge after commit"
  recovers a crash only with a broker that redelivers (Mosquitto, EMQX): this one is
  for demos and tests, never for a plant.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

LISTENER = "default"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
QUIET_LOGGERS = ("amqtt", "transitions")

T = TypeVar("T")


class AdmitAll(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Admits every client, and unlike amqtt's anonymous plugin keeps its session durable."""

    async def authenticate(self, *, session: Session) -> bool:
        """Let every client in: the demo's broker listens on loopback only."""
        return True


def broker_config() -> dict[str, Any]:
    """A fresh config each time: amqtt rewrites the dictionary it is given."""
    return {
        "listeners": {LISTENER: {"type": "external"}},
        "plugins": {f"{AdmitAll.__module__}.{AdmitAll.__qualname__}": {}},
    }


class EmbeddedBroker:
    """``start()`` returns once connections are accepted on ``port``; ``stop()`` ends it.

    ``port=0`` picks a free port. Not restartable: make a new one instead.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._running: _Running | None = None
        _quiet_amqtt()

    def start(self) -> None:
        """Listen; raises what amqtt or the socket raised (e.g. port in use)."""
        running = _Running()
        self._running = running
        try:
            self.port = running.call(running.open(self.host, self.port), START_TIMEOUT_S)
        except BaseException:
            running.end()
            raise

    def stop(self) -> None:
        """Disconnect every client, close the port, end the thread; safe to call twice."""
        running, self._running = self._running, None
        if running is None:
            return
        try:
            running.call(running.close(), STOP_TIMEOUT_S)
        finally:
            running.end()

    def subscriptions(self, client_id: str) -> set[str]:
        """The topic filters ``client_id`` is subscribed to now; empty when not running.

        A publisher should wait for its subscriber's filters: what is published before a
        first subscription reaches no one, as there is no session yet to queue it for.
        """
        running = self._running
        if running is None:
            return set()
        return running.call(running.subscriptions(client_id), START_TIMEOUT_S)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Running:
    """The loop thread, and the broker and server that live on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="mqtt-broker", daemon=True
        )
        self.thread.start()
        self.broker: Broker | None = None
        self.server: asyncio.Server | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def open(self, host: str, port: int) -> int:
        """The port actually listened on."""
        self.broker = Broker(broker_config())
        await self.broker.start()
        self.server = await asyncio.start_server(self._accept, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.broker is not None, "connections are accepted only once the broker runs"
        try:
            await self.broker.external_connected(
                StreamReaderAdapter(reader), StreamWriterAdapter(writer), LISTENER
            )
        finally:  # amqtt leaves a connection that closed before its CONNECT open
            writer.close()

    async def subscriptions(self, client_id: str) -> set[str]:
        assert self.broker is not None, "asked only once the broker runs"
        return {
            topic_filter
            for topic_filter, subscribers in self.broker.subscriptions.items()
            if any(session.client_id == client_id for session, _ in subscribers)
        }

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.broker is not None:
            await self.broker.shutdown()
        if self.server is not None:
            await self.server.wait_closed()
        await _cancel_others()

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(STOP_TIMEOUT_S)
        if not self.thread.is_alive():
            self.loop.close()


async def _cancel_others() -> None:
    """Connection tasks the broker did not end itself would be destroyed pending."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _quiet_amqtt() -> None:
    """Keep amqtt to its warnings, unless the caller chose a level.

    At INFO it logs every connection, and its state machine library every state change.
    """
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
