"""The dead-letter store: every rejected message or object, with its reason, as JSON lines.

Appended and fsynced before the ingest commits and acknowledges, so a rejection is never
lost; a crash between the two can repeat a line, never drop one.

``cellmon deadletter replay`` rewrites the store while ``cellmon run`` may be appending to
it. The two share ``deadletter.lock``: an append holds it while it writes, and the rewrite
holds it while it reads what was appended since its snapshot and renames the new file into
place. The appender holds the file open, so after a rename it would write into the old,
unlinked file: it compares its file with the path under the lock and reopens when they
differ. The rename keeps a crash mid-rewrite from losing letters.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from collector.source.decode import Rejection

LOCK_SUFFIX = ".lock"


class StoreChanged(RuntimeError):
    """The store's snapshot is no longer its beginning: someone else rewrote it meanwhile."""


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the store's lock (``deadletter.lock`` beside ``deadletter.jsonl``); blocks."""
    with open(path.with_suffix(LOCK_SUFFIX), "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class DeadLetters:
    """Append-only JSON-lines file: ``{time, topic, reason, detail, payload}``.

    ``payload`` is the raw payload decoded as UTF-8 (invalid bytes replaced) and truncated
    to ``max_bytes``; ``truncated`` says whether it was cut.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max = max_bytes
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - held for the store's life

    def append(self, rejections: Sequence[Rejection], now_ns: int) -> None:
        """Write the rejections durably, into the file the path names now (see the module)."""
        stamp = datetime.fromtimestamp(now_ns / 1e9, UTC).isoformat()
        lines = [
            entry_line(
                {
                    "time": stamp,
                    "topic": r.topic,
                    "reason": r.reason,
                    "detail": r.detail,
                    "payload": r.payload[: self._max].decode("utf-8", errors="replace"),
                    "truncated": len(r.payload) > self._max,
                }
            )
            for r in rejections
        ]
        with locked(self.path):
            self._reopen_if_replaced()
            self._file.write(b"".join(lines))
            self._file.flush()
            os.fsync(self._file.fileno())

    def _reopen_if_replaced(self) -> None:
        try:
            same = os.path.samestat(os.stat(self.path), os.fstat(self._file.fileno()))
        except FileNotFoundError:
            same = False
        if not same:
            self._file.close()
            self._file = open(self.path, "ab")  # noqa: SIM115 - held for the store's life

    def close(self) -> None:
        """Release the file."""
        self._file.close()


def entry_line(entry: Mapping[str, object]) -> bytes:
    """One entry as the store holds it: a JSON object and a newline."""
    return orjson.dumps(entry) + b"\n"


def read_dead_letters(path: Path) -> list[dict[str, object]]:
    """Every entry of a dead-letter file, oldest first (for tools and tests)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def snapshot(path: Path) -> bytes:
    """The store as it is now, whole lines only (an append is written under the lock)."""
    with locked(path):
        return path.read_bytes() if path.exists() else b""


def rewrite(path: Path, before: bytes, replaced: Mapping[int, Sequence[bytes]]) -> None:
    """Replace lines of the snapshot ``before``, keeping whatever was appended since.

    ``replaced``: line index in ``before`` → its new lines (none: the letter leaves). The
    new file is written beside the store, fsynced and renamed over it under the lock, so
    that an append is either in the old file before the read or in the new one after.
    """
    with locked(path):
        now = path.read_bytes() if path.exists() else b""
        if not now.startswith(before):
            msg = f"{path} was rewritten by someone else meanwhile; run the command again"
            raise StoreChanged(msg)
        lines = before.splitlines(keepends=True)
        kept = [b"".join(replaced.get(k, (line,))) for k, line in enumerate(lines)]
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(kept) + now[len(before) :])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
