"""The seam between the drain loop and a time-series store.

A sink only delivers: the drain loop owns the durable buffer, the retries and the backoff,
and deletes a batch only after `write()` returned. So a sink must never report success for
a batch the store has not accepted, and must say whether sending the same batch again can
ever succeed.
"""

from __future__ import annotations

from typing import Protocol

ERROR_TEXT_LIMIT = 1000
# Statuses that condemn the batch itself: sent again unchanged it is refused again.
# Everything else (401, 403, 404 database not found, 408, 429, 5xx) is about the
# deployment or the server's state, which someone can fix while the batch waits.
BATCH_REJECTED = frozenset({400, 413, 422})


class SinkError(Exception):
    """The store did not accept a batch.

    `retryable` is True when the same batch may be accepted later (network down, server
    overloaded or failing, database or permission missing): keep it and retry. False when
    the store refused the content (bad line protocol, batch too large): retrying as is
    cannot help.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sink(Protocol):
    """Writes batches of InfluxDB line protocol to a store.

    Call order: any number of `write()`, then `close()` once. Not thread-safe: one drain
    loop owns a sink.
    """

    def write(self, lines: bytes) -> None:
        """Deliver one batch; return only once the store has accepted all of it.

        `lines` are newline-separated line protocol with nanosecond timestamps; a final
        newline is optional. Raises `SinkError` when the batch was not accepted.
        """
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def http_status_error(status: int, text: str) -> SinkError:
    """Classify an HTTP answer other than 204 to a write, keeping the server's words."""
    shown = text.strip()[:ERROR_TEXT_LIMIT] or "no error text"
    return SinkError(f"HTTP {status}: {shown}", retryable=status not in BATCH_REJECTED)
