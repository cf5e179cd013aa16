"""The durable journal: two SQLite files (WAL) in the state directory.

It is the transactional outbox of the pipeline, split so that each file has one busy
writer. ``inbox.sqlite`` belongs to the MQTT source: it appends accepted input and only then
acknowledges the broker. ``journal.sqlite`` belongs to the processor stage: in one
transaction it appends line protocol to ``outbox``, saves processor state and advances its
position in the inbox, so a crash resumes exactly where the last commit left off. The sink
stage deletes outbox rows only after the database accepted them.

Counters live in the same files and advance in the same transactions as the data they
count, so the self-metrics are exact and survive restarts.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from collector.journal.cells import CellIds
from collector.journal.parts import read_parts, write_parts
from collector.source.decode import EventRow, SampleRow

SAMPLE, EVENT = 0, 1
RAW, KPI = 0, 1
INBOX_FILE = "inbox.sqlite"
JOURNAL_FILE = "journal.sqlite"

_COUNTERS = "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
# The unique key leads with ts: samples arrive roughly in time order, so each commit touches
# the right edge of the index instead of one page per cell.
INBOX_SCHEMA = (
    _COUNTERS
    + """
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY, potline TEXT NOT NULL, cell TEXT NOT NULL, UNIQUE (potline, cell));
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY, cell_id INTEGER NOT NULL, ts INTEGER NOT NULL,
    dkey INTEGER NOT NULL, kind INTEGER NOT NULL, v REAL, i REAL, body BLOB,
    lag INTEGER NOT NULL DEFAULT 0, UNIQUE (ts, cell_id, dkey));
"""
)
_LAG_COLUMN = "ALTER TABLE inbox ADD COLUMN lag INTEGER NOT NULL DEFAULT 0"
"""``lag``: a live sample's arrival − ts (contract 6.5) as ``lag_code`` writes it.

Most rows are untimed (arrays, events): their 0 takes no byte in SQLite's record, and a
lag under 8 s two, where the arrival itself would take 8. Not NULL: Python's sqlite3 binds
None through its adapter lookup, 0.3 µs a row, 15 % of the MQTT thread's insert (measured).
"""


def lag_code(lag_ms: int | None) -> int:
    """The stored ``lag``: 0 for untimed, lag + 1 for a lag ≥ 0 ms, the lag if negative."""
    return 0 if lag_ms is None else lag_ms + 1 if lag_ms >= 0 else lag_ms


JOURNAL_SCHEMA = (
    _COUNTERS
    + """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state_part (
    name TEXT NOT NULL, part TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (name, part));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL, lines INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, created_ns INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL);
"""
)
CACHE_KIB = 256
"""A page cache (SQLite's default 2 MB fills on a connection that reads as much). The worker's
work at b-tree edges: the engine reads the inbox in order, prunes its left end, appends to
the outbox; the drain takes and deletes its oldest rows. Draining 200,000 messages of 400
cells: the worker's peak RSS 113 → 107 MiB, at the same rate (benchmarks/pipeline.py)."""
APPEND_CACHE_KIB = 1024
"""The MQTT process's inbox: its appends drain 30,000 samples/s at 256 KiB, 44,000 at 1 MiB."""
JOURNAL_ERRORS = (sqlite3.OperationalError, OSError)
"""What a journal file raises when its disk or lock fails (full, I/O error, busy): retry."""
_ADD = (
    "INSERT INTO counters (name, value) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"
)


class InboxRows(NamedTuple):
    """Accepted samples and events as the processor stage reads them back, in columns.

    One tuple per column, in arrival order: a row object each would cost the engine a
    tenth of its time.
    """

    seq: tuple[int, ...]
    cell_id: tuple[int, ...]
    ts: tuple[int, ...]
    kind: tuple[int, ...]  # SAMPLE or EVENT
    v: tuple[float | None, ...]
    i: tuple[float | None, ...]
    body: tuple[bytes | None, ...]  # a sample's extra fields, or an event's type and data
    lag: tuple[int, ...]  # a live sample's arrival − ts as ``lag_code`` stores it; 0: untimed

    def take(self, rows: Iterable[int]) -> InboxRows:
        """The rows at these indices."""
        keep = list(rows)
        columns: list[Any] = [tuple(column[k] for k in keep) for column in self]
        return InboxRows(*columns)


NO_ROWS = InboxRows((), (), (), (), (), (), (), ())


class JournalDamaged(Exception):
    """A journal file that SQLite cannot read: cellmon must neither run on it nor replace it.

    Starting anew over it would silently lose the samples, the KPI state and the output
    it holds, so the operator decides: the message names the file and the way out.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is damaged ({problem}); cellmon will not start on it. Move it aside "
            f"(with any {path.name}-wal and {path.name}-shm) and restore it from a backup; "
            "with no backup, the next start begins an empty file and what it held is lost"
        )


_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _damaged(path: Path, err: sqlite3.DatabaseError) -> Exception:
    """The error to raise for a failed open: ``JournalDamaged`` when the file is, else err."""
    if err.sqlite_errorcode & 0xFF in _DAMAGED:  # the primary code of an extended one
        return JournalDamaged(path, str(err))
    return err


def connect(
    path: Path, schema: str, *, synchronous: str = "NORMAL", cache_kib: int = CACHE_KIB
) -> sqlite3.Connection:
    """Open a journal file, creating it on first use; one connection per thread.

    WAL with ``synchronous=NORMAL`` survives a crash of the process (the commit is in the
    WAL before the broker is acknowledged); ``FULL`` also survives a power cut, at the
    price of an fsync per commit. A file SQLite finds damaged raises ``JournalDamaged``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
        conn.executescript(schema)
    except sqlite3.DatabaseError as err:
        conn.close()
        raise _damaged(path, err) from err
    return conn


def verify(state_dir: Path) -> None:
    """Check every page of both journal files once, before a start; ``JournalDamaged`` if not.

    ``PRAGMA quick_check`` reads the whole file: about a second per million inbox rows
    (55 MB) on a 2-core server, so 0.7 s for the 8 hours of de-duplication window an inbox
    keeps of 24 cells at 1 Hz, and half a minute for 1,000 samples/s.
    """
    for name, schema in ((INBOX_FILE, INBOX_SCHEMA), (JOURNAL_FILE, JOURNAL_SCHEMA)):
        path = state_dir / name
        if not path.exists():
            continue  # a new state directory
        conn = connect(path, schema)
        try:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as err:
            raise _damaged(path, err) from err
        finally:
            conn.close()
        if problems != ["ok"]:
            raise JournalDamaged(path, _first_problem(problems))


def _first_problem(problems: list[str]) -> str:
    """One line of what ``quick_check`` found: its rows hold many lines each."""
    lines = [x for p in problems for x in p.splitlines() if x and not x.startswith("***")]
    more = f" and {len(lines) - 1} more" if len(lines) > 1 else ""
    return f"quick_check: {lines[0]}{more}"


def connect_inbox(state_dir: Path, *, cache_kib: int = CACHE_KIB) -> sqlite3.Connection:
    """The inbox file; checkpoints are left to the processor stage, off the MQTT thread."""
    conn = connect(state_dir / INBOX_FILE, INBOX_SCHEMA, cache_kib=cache_kib)
    conn.execute("PRAGMA wal_autocheckpoint=20000")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(inbox)")}
    if "lag" not in columns:  # an inbox of an earlier version: its rows become untimed
        with suppress(sqlite3.OperationalError):  # the other process added it meanwhile
            conn.execute(_LAG_COLUMN)
    return conn


def connect_journal(state_dir: Path) -> sqlite3.Connection:
    """The processor stage's file: state, position and outbox."""
    return connect(state_dir / JOURNAL_FILE, JOURNAL_SCHEMA)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error (the caller retries).

    SQLite has already rolled back after some errors (a full disk): a second ROLLBACK
    would raise and hide the error that matters.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def add_counters(conn: sqlite3.Connection, counts: Mapping[str, int]) -> None:
    """Advance counters inside the caller's transaction."""
    conn.executemany(_ADD, [(k, v) for k, v in counts.items() if v])


def read_counters(conn: sqlite3.Connection) -> dict[str, int]:
    """Every counter of one journal file."""
    return dict(conn.execute("SELECT name, value FROM counters").fetchall())


def event_key(kind: str, data: dict[str, Any]) -> int:
    """Identify an event for de-duplication: two anodes changed at the same instant differ."""
    digest = hashlib.blake2b(orjson.dumps([kind, data], option=orjson.OPT_SORT_KEYS), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True) or 1


@dataclass(frozen=True, slots=True)
class Appended:
    """Outcome of one ingest commit."""

    inserted: int
    duplicates: int


class Inbox:
    """The MQTT thread's side: append accepted samples and events, de-duplicated."""

    _INSERT = (
        "INSERT OR IGNORE INTO inbox (cell_id, ts, dkey, kind, v, i, body, lag) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.cells = CellIds(conn)

    def append(
        self, samples: list[SampleRow], events: list[EventRow], counts: Mapping[str, int]
    ) -> Appended:
        """Commit samples and events; rows already present (QoS 1 redelivery) are skipped.

        ``counts`` (messages, rejections by reason) advance in the same transaction, with
        ``accepted``, ``duplicates`` and ``received`` derived here.
        """
        ids = self.cells.id
        dumps = orjson.dumps
        rows: list[tuple[Any, ...]] = [
            (
                ids(p, c),
                ts,
                0,
                SAMPLE,
                v,
                i,
                dumps(extra) if extra else None,
                0 if lag is None else lag + 1 if lag >= 0 else lag,  # lag_code, inline
            )
            for p, c, ts, v, i, extra, lag in samples
        ]
        rows.extend(
            (ids(p, c), ts, event_key(k, d), EVENT, None, None, dumps({"type": k, **d}), 0)
            for p, c, ts, k, d in events
        )
        conn = self._conn
        with transaction(conn):
            inserted = conn.executemany(self._INSERT, rows).rowcount if rows else 0
            duplicates = len(rows) - inserted
            received = len(rows) + counts.get("rejected", 0)
            add_counters(
                conn,
                {**counts, "accepted": inserted, "duplicates": duplicates, "received": received},
            )
        return Appended(inserted, duplicates)


class Store:
    """The processor stage's side: read the inbox, checkpoint state, position and output."""

    def __init__(self, inbox: sqlite3.Connection, conn: sqlite3.Connection) -> None:
        self._inbox = inbox
        self._conn = conn
        self.cells = CellIds(inbox)

    def position(self) -> int:
        """Sequence number of the last inbox row whose effects are committed."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'position'").fetchone()
        return int(row[0]) if row else 0

    def read(self, after: int, limit: int) -> InboxRows:
        """Inbox rows after a position, in arrival order."""
        cur = self._inbox.execute(
            "SELECT seq, cell_id, ts, kind, v, i, body, lag FROM inbox WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        )
        rows = cur.fetchall()
        return InboxRows(*zip(*rows, strict=True)) if rows else NO_ROWS

    def load_state(self, name: str) -> Any:
        """Return a processor's checkpointed state, or None before its first checkpoint."""
        return read_state(self._conn, name)

    def commit(
        self,
        position: int,
        states: dict[str, Any],
        chunks: Iterable[tuple[int, int, bytes]],
        now_ns: int,
        counts: Mapping[str, int],
        alerts: Sequence[tuple[str, bytes]] = (),
        parts: Mapping[str, tuple[Mapping[str, Any], bool]] = {},
    ) -> None:
        """Atomically record the output chunks (kind, lines, body), alerts, states, position.

        ``parts``: per state, the changed parts of a ``Chunked`` state and whether they are
        all of them (``collector.journal.parts``); ``load_state`` gives them back.
        """
        conn = self._conn
        with transaction(conn):
            for name, (changed, whole) in parts.items():
                write_parts(conn, name, changed, whole=whole)
            add_counters(conn, counts)
            conn.executemany("INSERT INTO alerts (topic, payload) VALUES (?, ?)", alerts)
            conn.executemany(
                "INSERT INTO outbox (kind, lines, nbytes, created_ns, body) VALUES (?, ?, ?, ?, ?)",
                [(k, n, len(b), now_ns, b) for k, n, b in chunks if n],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO state (name, body) VALUES (?, ?)",
                [(name, orjson.dumps(body)) for name, body in states.items()],
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('position', ?)", (position,)
            )

    def prune(self, upto_seq: int) -> int:
        """Forget processed inbox rows up to a sequence number (the de-duplication window)."""
        upto = min(upto_seq, self.position())
        return self._inbox.execute("DELETE FROM inbox WHERE seq <= ?", (upto,)).rowcount

    def checkpoint(self) -> None:
        """Fold the inbox's WAL into its database without blocking the MQTT thread."""
        self._inbox.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def counters(self) -> dict[str, int]:
        """The counters of both files."""
        return read_counters(self._inbox) | read_counters(self._conn)

    def backlog(self) -> tuple[int, int | None]:
        """(lines waiting, production time of the oldest) of the outbox."""
        return backlog(self._conn)


def read_state(conn: sqlite3.Connection, name: str) -> Any:
    """A processor's checkpointed state in a journal, or None before its first checkpoint.

    The state of a processor that keeps parts has them under ``"parts"``, as its
    ``checkpoint`` gives them.
    """
    row = conn.execute("SELECT body FROM state WHERE name = ?", (name,)).fetchone()
    state = orjson.loads(row[0]) if row else None
    parts = read_parts(conn, name)
    if parts and isinstance(state, dict):
        state["parts"] = parts
    return state


def backlog(conn: sqlite3.Connection) -> tuple[int, int | None]:
    """(lines waiting in the outbox, production time of the oldest)."""
    lines, oldest = conn.execute("SELECT total(lines), min(created_ns) FROM outbox").fetchone()
    return int(lines), oldest
