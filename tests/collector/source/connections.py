"""The broker connection the source tests use, with what each test adds (TLS, a login)."""

from __future__ import annotations

from typing import Any

from collector.source.mqtt_client import ClientKind, Connection


def connection(port: int, client: ClientKind = "mqtt5", **options: Any) -> Connection:
    return Connection(
        host="127.0.0.1",
        port=port,
        client_id="cellmon-t",
        keepalive_s=30,
        reconnect_max_s=30.0,
        client=client,
        **options,
    )
