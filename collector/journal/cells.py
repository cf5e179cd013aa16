"""Stable small integers for (potline, cell), shared by the inbox's two sides."""

from __future__ import annotations

import sqlite3


class CellIds:
    """Stable small integers for (potline, cell), so the inbox stores no repeated strings."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._ids: dict[tuple[str, str], int] = {}
        self._names: dict[int, tuple[str, str]] = {}
        self.reload()

    def reload(self) -> None:
        """Read every known cell; called when another stage has added one."""
        for cid, potline, cell in self._conn.execute("SELECT id, potline, cell FROM cells"):
            self._ids[(potline, cell)] = cid
            self._names[cid] = (potline, cell)

    def id(self, potline: str, cell: str) -> int:
        """Return the id of a cell, registering it on first sight (inside the caller's txn)."""
        key = (potline, cell)
        try:
            return self._ids[key]
        except KeyError:
            cur = self._conn.execute(
                "INSERT INTO cells (potline, cell) VALUES (?, ?) RETURNING id", key
            )
            cid = int(cur.fetchone()[0])
            self._ids[key] = cid
            self._names[cid] = key
            return cid

    def name(self, cid: int) -> tuple[str, str]:
        """Return (potline, cell) of an id."""
        try:
            return self._names[cid]
        except KeyError:
            self.reload()
            return self._names[cid]
