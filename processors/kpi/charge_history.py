"""A cell's charge by UTC minute, so that "charge between two instants" can be answered later.

A tap is often logged after the samples that pass it (events and telemetry come on
different topics, and an operator may log it late), so the charge up to the tap's instant
cannot be read off a running total when the tap arrives: each cell keeps ∫ I dt and its
covered seconds per UTC minute, integrated by ``integrate`` over exactly the intervals
``sec_cell`` counts (in-order samples no further apart than ``max_gap_s``, split at the
minute boundaries by linear interpolation).

Minutes are kept in chunks of ``CHUNK_MIN`` minutes, one flat array of ``2 × CHUNK_MIN``
doubles each (the charges, then the covered seconds): a list of float objects took three
times the memory, 45 MB for 400 cells a day into their cycles. A chunk is the unit a checkpoint
writes: only the chunks that changed since the last checkpoint (the newest one or two of
each cell, a few hundred numbers per cell at most) are written, not the whole history.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from processors.kpi.periods import Calendar

NS = 1_000_000_000
MINUTE_NS = 60 * NS
CHUNK_MIN = 10
CHUNK_NS = CHUNK_MIN * MINUTE_NS
_ZEROS = bytes(8 * 2 * CHUNK_MIN)


class MinuteGrid(Calendar):
    """UTC minutes as the only kind of period, so that ``integrate`` splits at minutes."""

    def __init__(self) -> None:
        super().__init__("UTC", ())

    def starts(self, kind: str, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Every minute start from the one holding ``t0`` to the one after ``t1``."""
        first = t0_ns // MINUTE_NS
        return np.arange(first, t1_ns // MINUTE_NS + 2, dtype=np.int64) * MINUTE_NS


@dataclass(slots=True)
class History:
    """One cell's charge and covered seconds per minute, by chunk, oldest chunk first.

    ``changed`` and ``removed`` are the chunks to write and delete at the next checkpoint;
    they are bookkeeping for the journal, not part of the state.
    """

    chunks: dict[int, array[float]] = field(default_factory=dict)
    changed: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)

    def add(self, minute_start_ns: int, charge_kah: float, covered_s: float) -> None:
        """Add a piece of integration to the minute starting at ``minute_start_ns``."""
        index, minute = divmod(minute_start_ns // MINUTE_NS, CHUNK_MIN)
        chunk = self.chunks.get(index)
        if chunk is None:
            chunk = self.chunks[index] = array("d", _ZEROS)
            self.removed.discard(index)
        chunk[minute] += charge_kah
        chunk[CHUNK_MIN + minute] += covered_s
        self.changed.add(index)

    def between(self, a_ns: int, b_ns: int) -> tuple[float, float]:
        """(charge kA·h, covered s) from ``a_ns`` to ``b_ns``.

        A minute partly inside counts in proportion to the time inside: exact for a current
        that is steady within the tap's minute, and otherwise off by a part of one minute's
        charge (300 kA: 5 kA·h a minute, 0.05 % of a day's cycle, at the very most).
        """
        charge = covered = 0.0
        for start, q, s in self._minutes(a_ns, b_ns):
            share = (min(b_ns, start + MINUTE_NS) - max(a_ns, start)) / MINUTE_NS
            if share > 0:
                charge += q * share
                covered += s * share
        return charge, covered

    def _minutes(self, a_ns: int, b_ns: int) -> Iterator[tuple[int, float, float]]:
        for index in range(a_ns // CHUNK_NS, (b_ns - 1) // CHUNK_NS + 1):
            chunk = self.chunks.get(index)
            if chunk is None:
                continue
            base = index * CHUNK_NS
            for m in range(CHUNK_MIN):
                if chunk[m] or chunk[CHUNK_MIN + m]:
                    yield base + m * MINUTE_NS, chunk[m], chunk[CHUNK_MIN + m]

    def trim(self, floor_ns: int) -> None:
        """Forget the chunks that end at or before ``floor_ns`` (oldest first, in order)."""
        while self.chunks:
            index = next(iter(self.chunks))
            if (index + 1) * CHUNK_NS > floor_ns:
                return
            del self.chunks[index]
            self.changed.discard(index)
            self.removed.add(index)

    def splice(self, other: History, a_ns: int, b_ns: int) -> None:
        """Take the minutes from ``a_ns`` to ``b_ns`` (minute boundaries) from ``other``.

        Only from this history's oldest chunk on: what it has forgotten no cycle to come
        needs. A minute ``other`` has no charge in has none here either.
        """
        oldest = next(iter(self.chunks), None)
        first, last = a_ns // CHUNK_NS, (b_ns - 1) // CHUNK_NS
        first = first if oldest is None else max(first, oldest)
        held = {*self.chunks, *other.chunks}  # a day is 144 chunks; a quiet cell has none
        for index in sorted(i for i in held if first <= i <= last):
            theirs, mine = other.chunks.get(index), self.chunks.get(index)
            if mine is None:
                mine = self.chunks[index] = array("d", _ZEROS)
                self.removed.discard(index)
            m0 = max(0, (a_ns - index * CHUNK_NS) // MINUTE_NS)
            m1 = min(CHUNK_MIN, -(-(b_ns - index * CHUNK_NS) // MINUTE_NS))
            for m in (*range(m0, m1), *range(CHUNK_MIN + m0, CHUNK_MIN + m1)):
                mine[m] = 0.0 if theirs is None else theirs[m]
            self.changed.add(index)
        self.chunks = dict(sorted(self.chunks.items()))

    def oldest_ns(self) -> int | None:
        """Where the kept history starts; None when there is none."""
        return next(iter(self.chunks)) * CHUNK_NS if self.chunks else None


def part_key(potline: str, cell: str, index: int) -> str:
    """A chunk's name in the journal; ids never hold ``/`` (contract section 1)."""
    return f"{potline}/{cell}/{index}"


def parse_part_key(key: str) -> tuple[str, str, int]:
    """(potline, cell, chunk index) of a ``part_key``."""
    potline, cell, index = key.split("/")
    return potline, cell, int(index)
