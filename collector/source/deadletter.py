"""The dead-letter store: every rejected message or object, with its reason, as JSON lines.

Appended and fsynced before the ingest commits and acknowledges, so a rejection is never
lost; a crash between the two can repeat a line, never drop one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from collector.source.decode import Rejection


class DeadLetters:
    """Append-only JSON-lines file: ``{time, topic, reason, detail, payload}``.

    ``payload`` is the raw payload decoded as UTF-8 (invalid bytes replaced) and truncated
    to ``max_bytes``; ``truncated`` says whether it was cut.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max = max_bytes
        self._file = open(path, "ab")  # noqa: SIM115 - held open for the life of the store

    def append(self, rejections: Sequence[Rejection], now_ns: int) -> None:
        """Write the rejections durably."""
        stamp = datetime.fromtimestamp(now_ns / 1e9, UTC).isoformat()
        lines = [
            orjson.dumps(
                {
                    "time": stamp,
                    "topic": r.topic,
                    "reason": r.reason,
                    "detail": r.detail,
                    "payload": r.payload[: self._max].decode("utf-8", errors="replace"),
                    "truncated": len(r.payload) > self._max,
                }
            )
            + b"\n"
            for r in rejections
        ]
        self._file.write(b"".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Release the file."""
        self._file.close()


def read_dead_letters(path: Path) -> list[dict[str, object]]:
    """Every entry of a dead-letter file, oldest first (for tools and tests)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
