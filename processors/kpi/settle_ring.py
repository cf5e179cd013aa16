"""Each cell's one-minute mean voltages over the last few hours, as numpy rows.

The settling of an anode change (``anode_settle``) is judged on one-minute means, and its
change event may be logged after the samples it needs (the 30 minutes before it, and the
minutes since). So every cell keeps its closed minutes in a ring of ``RING_MIN`` slots, one
row per cell, updated for a whole batch at once: a batch of 400 one-second samples is one
sort and one ``reduceat``, with no Python loop over samples or cells.

A minute is a UTC minute by the samples' own timestamps (with the whole-minute offsets
every zone has used since 1972, the local minute of ``cell_1m``). A cell's newest minute is
*open*: it is kept as a running sum and count and closes once the cell sends a sample of a
later minute. The engine hands processors only samples newer than their cell's newest, so a
closed minute never changes again, and a mean judged once is final. A closed mean is kept
rounded to the microvolt, as an int32 (``MISSING`` where the cell sent nothing), so the
checkpoint is compact and every judgement exact: 4 bytes a minute, base64 in the JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from processors.kpi.by_cell import ByCell
from processors.kpi.ledger import CellKey
from processors.model import SampleBatch

NS = 1_000_000_000
MINUTE_NS = 60 * NS
PRE_MIN = 30
"""The minutes before a change whose mean is its cell's level before it."""
LATE_MIN = 120
"""How late (in its cell's data time) a change may be logged and still be judged exactly."""
RING_MIN = PRE_MIN + 1 + LATE_MIN
MISSING = int(np.iinfo(np.int32).min)
UV = 1e6


@dataclass(frozen=True, slots=True)
class View:
    """A cell's closed minute means (µV, ``MISSING`` for none) over minutes [start, end)."""

    start: int
    values: np.ndarray

    @property
    def end(self) -> int:
        """The cell's open minute: every minute before it is closed."""
        return self.start + len(self.values)

    def at(self, first: int, last: int) -> np.ndarray:
        """The means of minutes [first, last); minutes outside the view are ``MISSING``."""
        out = np.full(max(0, last - first), MISSING, dtype=np.int64)
        a, b = max(first, self.start), min(last, self.end)
        if a < b:
            out[a - first : b - first] = self.values[a - self.start : b - self.start]
        return out


@dataclass
class Ring:
    """Closed minute means and the open minute of every cell seen, rows in cell order."""

    cells: list[CellKey]
    means: np.ndarray  # int32 [cells, RING_MIN]: minute m of a row in slot m % RING_MIN
    open_minute: np.ndarray  # int64 [cells]: -1 before the first sample
    open_sum: np.ndarray  # float64 [cells]
    open_count: np.ndarray  # int64 [cells]
    _at: dict[tuple[str, str], int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def empty(cls) -> Ring:
        """A ring without cells."""
        return cls([], np.full((0, RING_MIN), MISSING, np.int32), *_columns(0))

    def row(self, cell: tuple[str, str]) -> int | None:
        """The cell's row, or None for a cell never seen."""
        if len(self._at) != len(self.cells):
            self._at = {c: k for k, c in enumerate(self.cells)}
        return self._at.get(cell)

    def opened(self, cell: CellKey) -> int:
        """The cell's open minute (-1: none yet); minutes before it are closed."""
        k = self.row(cell)
        return -1 if k is None else int(self.open_minute[k])

    def view(self, row: int) -> View:
        """The row's closed minutes still in the ring."""
        end = int(self.open_minute[row])
        if end < 0:
            return View(0, np.zeros(0, dtype=np.int64))
        minutes = np.arange(end - RING_MIN, end)
        return View(end - RING_MIN, self.means[row, minutes % RING_MIN].astype(np.int64))

    def add(self, sb: SampleBatch, following: Collection[tuple[str, str]]) -> dict[int, View]:
        """Add a batch; the closed minutes of each ``following`` cell it moved on.

        Each returned view is read before the update: it spans the row's ring before the
        batch and every minute the batch closed, however many (a controller flushing hours
        of buffer), so a change judged on it never misses a minute the ring has dropped.
        """
        if not len(sb):
            return {}
        r, m, v, w = self._grouped(sb)
        step = np.empty(len(r), dtype=bool)
        step[0] = True
        np.not_equal(r[1:], r[:-1], out=step[1:])
        step[1:] |= m[1:] != m[:-1]
        first = np.flatnonzero(step)
        gr, gm = r[first], m[first]
        gsum, gcount = np.add.reduceat(v, first), np.add.reduceat(w, first)
        last = np.empty(len(gr), dtype=bool)
        last[-1] = True
        np.not_equal(gr[1:], gr[:-1], out=last[:-1])
        lr, lm = gr[last], gm[last]
        closed = ~last
        cr, cm = gr[closed], gm[closed]
        cmean = np.rint(gsum[closed] / gcount[closed] * UV).astype(np.int64)
        moved = lm > self.open_minute[lr]
        at = self._at
        wanted = {at[c] for c in following if c in at}
        views = {
            row: self._view_with(row, end, cm[cr == row], cmean[cr == row])
            for row, end in zip(lr[moved].tolist(), lm[moved].tolist(), strict=True)
            if row in wanted
        }
        self._write(lr[moved], lm[moved], cr, cm, cmean)
        self.open_minute[lr] = lm
        self.open_sum[lr] = gsum[last]
        self.open_count[lr] = gcount[last]
        return views

    def _grouped(self, sb: SampleBatch) -> tuple[np.ndarray, ...]:
        """(row, minute, voltage, weight) of each sample, by row and minute.

        Each row's open minute joins its group as one weighted pseudo-sample, after the
        samples of that minute. The batch comes sorted by cell and time (``ByCell``): a
        row is a cell, and a cell's samples are newer than its open minute, so the
        pseudo-sample goes in at its place, no sort of the whole batch again.
        """
        s = ByCell.of(sb)
        r, m = self._rows(sb.cells)[s.code], s.t // MINUTE_NS
        heads = r[s.heads]
        carried = self.open_count[heads] > 0
        had = heads[carried]
        opened = self.open_minute[had]
        run = s.code.astype(np.int64) << 33  # a minute since 1970 is below 2**33
        at = np.searchsorted(run + m, (s.code[s.heads][carried] << 33) + opened, side="right")
        return (
            np.insert(r, at, had),
            np.insert(m, at, opened),
            np.insert(s.v, at, self.open_sum[had]),
            np.insert(np.ones(len(r), np.int64), at, self.open_count[had]),
        )

    def _view_with(self, row: int, end: int, minutes: np.ndarray, means: np.ndarray) -> View:
        """The row's ring before the batch, then the minutes the batch closed, up to ``end``."""
        if int(self.open_minute[row]) >= 0:
            before = self.view(row)
            start = before.start
        else:  # a new cell: nothing before its first minute
            before = View(end, np.zeros(0, dtype=np.int64))
            start = min(end - RING_MIN, int(minutes[0]) if len(minutes) else end)
        values = np.full(end - start, MISSING, dtype=np.int64)
        values[before.start - start : before.end - start] = before.values
        values[minutes - start] = means
        return View(start, values)

    def _write(
        self,
        rows: np.ndarray,
        new_open: np.ndarray,
        cr: np.ndarray,
        cm: np.ndarray,
        cmean: np.ndarray,
    ) -> None:
        """Clear the slots of the minutes each moved row closed, then store their means.

        Only the rows whose open minute moved are touched: at 1 Hz that is each row once a
        minute, not once a batch.
        """
        if not len(rows):
            return
        old = self.open_minute[rows]
        first = np.maximum(np.where(old < 0, new_open, old), new_open - RING_MIN)
        base = (new_open - RING_MIN)[:, None]
        minute = base + (np.arange(RING_MIN)[None, :] - base) % RING_MIN
        block = self.means[rows]
        block[minute >= first[:, None]] = MISSING
        self.means[rows] = block
        end = np.zeros(len(self.cells), dtype=np.int64)
        end[rows] = new_open
        inside = cm >= end[cr] - RING_MIN
        self.means[cr[inside], cm[inside] % RING_MIN] = cmean[inside]

    def _rows(self, names: Sequence[tuple[str, str]]) -> np.ndarray:
        """The ring row of each of the batch's cells; new cells are inserted in order."""
        at = self._at
        if len(at) != len(self.cells):
            at = self._at = {c: k for k, c in enumerate(self.cells)}
        try:
            return np.fromiter(map(at.__getitem__, names), dtype=np.int64, count=len(names))
        except KeyError:
            pass  # a cell seen for the first time
        new = sorted({CellKey(*n) for n in names if n not in at})
        if new:
            cells = sorted([*self.cells, *new])
            at = self._at = {c: k for k, c in enumerate(cells)}
            old = np.array([at[c] for c in self.cells], dtype=np.int64)
            means = np.full((len(cells), RING_MIN), MISSING, np.int32)
            means[old] = self.means
            columns = _columns(len(cells))
            for column, values in zip(
                columns, (self.open_minute, self.open_sum, self.open_count), strict=True
            ):
                column[old] = values
            self.cells, self.means = cells, means
            self.open_minute, self.open_sum, self.open_count = columns
        return np.array([at[n] for n in names], dtype=np.int64)

    def to_json(self) -> dict[str, Any]:
        """Compact: the means as base64 bytes; the open sums as JSON floats (they round)."""
        return {
            "cells": [list(c) for c in self.cells],
            "means": base64.b64encode(self.means.tobytes()).decode(),
            "open_minute": self.open_minute.tolist(),
            "open_sum": self.open_sum.tolist(),
            "open_count": self.open_count.tolist(),
        }

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Ring:
        """The ring ``to_json`` wrote, in new arrays."""
        if not data:
            return cls.empty()
        cells = [CellKey(*c) for c in data["cells"]]
        means = np.frombuffer(base64.b64decode(data["means"]), dtype=np.int32)
        return cls(
            cells,
            means.reshape(len(cells), RING_MIN).copy(),
            np.array(data["open_minute"], dtype=np.int64),
            np.array(data["open_sum"], dtype=np.float64),
            np.array(data["open_count"], dtype=np.int64),
        )


def _columns(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.full(n, -1, np.int64), np.zeros(n, np.float64), np.zeros(n, np.int64)
