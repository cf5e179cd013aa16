"""``/health``'s verdict from the broker session and the journal's last write outcome."""

from __future__ import annotations

import pytest

from collector.journal.outbox import WriteState
from collector.runtime.exporter import health
from collector.runtime.metrics import Metrics, Reading

BROKER = "10.0.0.5:1883"
WROTE = WriteState(wrote_ns=2_000_000_000)
REFUSED = WriteState(
    wrote_ns=1_000_000_000, failed_ns=2_000_000_000, failure="timed out", failing=True
)


def reading(write: WriteState, buffered: int) -> Reading:
    return Reading(Metrics(buffered=buffered, lag_s=0.5 if buffered else 0.0), write)


@pytest.mark.parametrize(
    ("session", "write", "buffered", "healthy", "reasons"),
    [
        (True, WROTE, 10, True, []),
        (True, WriteState(), 0, True, []),  # never written, nothing waits
        (True, REFUSED, 0, True, []),  # refused, but nothing waits to be written
        (False, WROTE, 0, False, [f"broker: no session with the MQTT broker at {BROKER}"]),
        (
            True,
            REFUSED,
            12,
            False,
            [
                "database: the last write failed at 1970-01-01T00:00:02+00:00 "
                "and 12 lines wait: timed out"
            ],
        ),
    ],
)
def test_health(
    session: bool, write: WriteState, buffered: int, healthy: bool, reasons: list[str]
) -> None:
    ok, body = health(reading(write, buffered), session, BROKER)
    assert ok is healthy
    assert body["reasons"] == reasons
    assert body["status"] == ("ok" if healthy else "unhealthy")
    assert body["broker_session"] is session
    assert body["buffered"] == buffered


def test_both_reasons_at_once() -> None:
    ok, body = health(reading(REFUSED, 3), False, BROKER)
    assert not ok
    assert [r.split(":")[0] for r in body["reasons"]] == ["broker", "database"]
    assert body["database"] == "failing"
    assert body["last_write"] == "1970-01-01T00:00:01+00:00"
