"""The sink stage's side of the journal: the outbox, and the alerts waiting for the broker.

Output is deleted from ``journal.sqlite`` only once the database (or the broker, for an
alert) accepted it, and the ``written`` and ``alerts_published`` counters advance in the
same transaction as the deletion.

The outcome of the last write (when the database last took a chunk, when it last refused
one and why) is kept in the ``meta`` table beside them, so that the MQTT process, which
serves ``/health``, knows the database's state without asking the worker: it survives a
restart, and costs one row in a transaction the drain makes anyway.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from collector.journal.store import RAW, add_counters, backlog, transaction


@dataclass(frozen=True, slots=True)
class Chunk:
    """Outbox rows read together for one write to the database."""

    last_id: int
    lines: int
    body: bytes
    oldest_ns: int


_SET_META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
WROTE, FAILED, FAILURE = "sink_wrote_ns", "sink_failed_ns", "sink_failure"
FAILING = "sink_failing"
"""Present from a refused write until the next accepted one: by order, not by clock, so
that a wall clock set back cannot make an old refusal look newer than a write."""


@dataclass(frozen=True, slots=True)
class WriteState:
    """The last write the database took and the last it refused (epoch ns; 0: never)."""

    wrote_ns: int = 0
    failed_ns: int = 0
    failure: str = ""
    failing: bool = False
    """True when the newest attempt was refused."""


def write_state(conn: sqlite3.Connection) -> WriteState:
    """The drain's last outcomes, read from ``journal.sqlite`` by any process."""
    keys = (WROTE, FAILED, FAILURE, FAILING)
    rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?)", keys))
    return WriteState(
        int(rows.get(WROTE, 0)),
        int(rows.get(FAILED, 0)),
        str(rows.get(FAILURE, "")),
        FAILING in rows,
    )


class Outbox:
    """The sink stage's side: oldest output first, deleted only once written."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def peek(self, max_lines: int) -> Chunk | None:
        """What ``take`` would give, without the body (b""): enough to say if it is due.

        The drain looks five times a second and writes only once a chunk is full or old
        enough: reading the bodies each time (hundreds of kB) was most of its idle work.
        """
        lines = 0
        last_id = oldest = 0
        cur = self._conn.execute("SELECT id, lines, created_ns FROM outbox ORDER BY id")
        for row_id, n, created in cur:
            if last_id and lines + n > max_lines:
                break
            oldest = oldest or created
            lines += n
            last_id = row_id
        cur.close()
        return Chunk(last_id, lines, b"", oldest) if last_id else None

    def take(self, max_lines: int) -> Chunk | None:
        """The oldest rows, up to about ``max_lines`` lines (at least one row)."""
        chunk = self.peek(max_lines)
        return None if chunk is None else self.with_body(chunk)

    def with_body(self, chunk: Chunk) -> Chunk:
        """A ``peek``'s chunk with its rows' body."""
        bodies = self._conn.execute(
            "SELECT body FROM outbox WHERE id <= ? ORDER BY id", (chunk.last_id,)
        ).fetchall()
        return Chunk(chunk.last_id, chunk.lines, b"".join(b for (b,) in bodies), chunk.oldest_ns)

    def delete_upto(self, last_id: int, lines: int) -> None:
        """Remove what the database accepted, counting it as written."""
        conn = self._conn
        with transaction(conn):
            conn.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))
            add_counters(conn, {"written": lines})
            conn.execute(_SET_META, (WROTE, time.time_ns()))
            conn.execute("DELETE FROM meta WHERE key = ?", (FAILING,))

    def write_failed(self, reason: str) -> None:
        """Count a refused write request and keep when and why, for ``/health``."""
        conn = self._conn
        with transaction(conn):
            add_counters(conn, {"write_errors": 1})
            now = time.time_ns()
            conn.executemany(_SET_META, [(FAILED, now), (FAILURE, reason[:500]), (FAILING, 1)])

    def count(self, **counts: int) -> None:
        """Advance counters on their own (errors, drops)."""
        add_counters(self._conn, counts)

    def size(self) -> tuple[int, int]:
        """(rows' bytes, lines) waiting."""
        row = self._conn.execute("SELECT total(nbytes), total(lines) FROM outbox").fetchone()
        return int(row[0]), int(row[1])

    def backlog(self) -> tuple[int, int | None]:
        """(lines waiting, production time of the oldest), for the buffered and lag gauges."""
        return backlog(self._conn)

    def drop_oldest_raw(self, max_bytes: int) -> int:
        """Delete the oldest raw-sample rows until the buffer fits; KPI rows are never dropped.

        Returns the number of lines dropped.
        """
        dropped = 0
        total, _ = self.size()
        cur = self._conn.execute(
            "SELECT id, lines, nbytes FROM outbox WHERE kind = ? ORDER BY id", (RAW,)
        )
        victims: list[int] = []
        for row_id, n, nbytes in cur:
            if total <= max_bytes:
                break
            victims.append(row_id)
            total -= nbytes
            dropped += n
        cur.close()
        conn = self._conn
        with transaction(conn):
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(v,) for v in victims])
            add_counters(conn, {"dropped": dropped})
        return dropped


class AlertQueue:
    """Alerts committed with the points that raised them, deleted once the broker has them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def take(self, limit: int) -> list[tuple[int, str, bytes]]:
        """The oldest (id, topic, payload), in the order they were raised."""
        return self._conn.execute(
            "SELECT id, topic, payload FROM alerts ORDER BY id LIMIT ?", (limit,)
        ).fetchall()

    def delete_upto(self, last_id: int, published: int) -> None:
        """Remove what the broker acknowledged, counting it."""
        conn = self._conn
        with transaction(conn):
            conn.execute("DELETE FROM alerts WHERE id <= ?", (last_id,))
            add_counters(conn, {"alerts_published": published})
