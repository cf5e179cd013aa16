"""Recalculation requests: how ``replay`` and ``recalc`` reach the worker of a live instance.

Only the worker that owns a state directory holds the processors' live state, so only it
can rewrite a period that it still has open without its next write undoing the rewrite. A
command therefore files its request in the worker's own journal file, and the worker (or
the command itself, when no instance runs) carries it out between two batches and records
the outcome there; the command follows the progress and prints the outcome.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from collector.journal.store import transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS recalc (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request BLOB NOT NULL, submitted_ns INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
    finished_ns INTEGER, outcome BLOB);
"""


@dataclass(frozen=True, slots=True)
class Status:
    """Where a request stands: progress in windows of history read, and its outcome."""

    done: int
    total: int
    outcome: dict[str, Any] | None  # None while it runs or waits


class Requests:
    """The ``recalc`` table of a state directory's ``journal.sqlite``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.executescript(SCHEMA)

    def submit(self, request: Any, now_ns: int) -> int:
        """File a request (JSON data); its id."""
        with transaction(self._conn) as conn:
            cur = conn.execute(
                "INSERT INTO recalc (request, submitted_ns) VALUES (?, ?) RETURNING id",
                (orjson.dumps(request), now_ns),
            )
            return int(cur.fetchone()[0])

    def pending(self) -> list[tuple[int, Any]]:
        """(id, request) of every request without an outcome, oldest first."""
        rows = self._conn.execute(
            "SELECT id, request FROM recalc WHERE outcome IS NULL ORDER BY id"
        ).fetchall()
        return [(int(i), orjson.loads(body)) for i, body in rows]

    def progress(self, request_id: int, done: int, total: int) -> None:
        """Record how far a running request is."""
        self._conn.execute(
            "UPDATE recalc SET done = ?, total = ? WHERE id = ?", (done, total, request_id)
        )

    def finish(self, request_id: int, outcome: dict[str, Any], now_ns: int) -> None:
        """Record a request's outcome (its summary, or ``{"error": why}``)."""
        self._conn.execute(
            "UPDATE recalc SET outcome = ?, finished_ns = ? WHERE id = ?",
            (orjson.dumps(outcome), now_ns, request_id),
        )

    def status(self, request_id: int) -> Status:
        """The progress and outcome of a request."""
        done, total, outcome = self._conn.execute(
            "SELECT done, total, outcome FROM recalc WHERE id = ?", (request_id,)
        ).fetchone()
        return Status(int(done), int(total), None if outcome is None else orjson.loads(outcome))
