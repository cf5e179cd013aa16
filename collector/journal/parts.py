"""A processor state kept in parts, one row each, so that a checkpoint writes what changed.

The ``state`` table holds a state as one JSON body, rewritten whole by every checkpoint:
right for a few hundred kilobytes, not for a charge history of every cell over three days
(``processors.base.Chunked``). Its parts live in ``state_part``, keyed by state and part
name, and are written in the checkpoint's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson


def read_parts(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    """Every stored part of a state, by part name (empty for a state without parts)."""
    rows = conn.execute("SELECT part, body FROM state_part WHERE name = ?", (name,)).fetchall()
    return {part: orjson.loads(body) for part, body in rows}


def write_parts(
    conn: sqlite3.Connection, name: str, changed: Mapping[str, Any], *, whole: bool
) -> None:
    """Upsert the changed parts of a state, delete the forgotten ones (all others if whole)."""
    if whole:
        conn.execute("DELETE FROM state_part WHERE name = ?", (name,))
    gone = [(name, part) for part, body in changed.items() if body is None]
    conn.executemany("DELETE FROM state_part WHERE name = ? AND part = ?", gone)
    conn.executemany(
        "INSERT OR REPLACE INTO state_part (name, part, body) VALUES (?, ?, ?)",
        [(name, part, orjson.dumps(body)) for part, body in changed.items() if body is not None],
    )
