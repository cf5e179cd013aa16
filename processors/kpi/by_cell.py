"""A batch's samples by cell and time, and the intervals between them: made once a batch.

Four processors read every batch this way: kWh/t, the anode effects and the tap cycles
integrate it, the minute aggregates group it. They get the same ``SampleBatch``, known here
by identity, and what is made of it is only read. Each made it anew: the cells' keys 1.5 ms
a batch of 2,000 cells; the sort of an hour of a recalculated day (180,000 samples), its
gathers, and each interval's hours, energy, charge and covered time three times over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from processors.kpi.energy import hours, seconds, trapezoids
from processors.kpi.ledger import cell_keys
from processors.model import SampleBatch

Resumed = tuple[int, float, float] | None
"""A cell's sample before the batch as (ts_ns, voltage_v, current_ka), None if none."""


class Cells:
    """The batch's cells by code: their keys, names, and potlines as small integers.

    Potlines are few, so what depends on the potline (counted or not, the threshold) is
    looked up once per potline and spread to the cells with numpy.
    """

    def __init__(self, cells: Sequence[tuple[str, str]]) -> None:
        self.keys = cell_keys(cells)
        self.names = [c for _, c in cells]
        index: dict[str, int] = {}
        self.pot = np.array([index.setdefault(p, len(index)) for p, _ in cells], dtype=np.int64)
        self.potlines = list(index)


class ByCell:
    """The batch's cells, and its samples sorted by cell, then time."""

    _last: tuple[SampleBatch, ByCell] | None = None

    @classmethod
    def of(cls, samples: SampleBatch) -> ByCell:
        """The sorted columns of ``samples``, made once per batch."""
        last = cls._last
        if last is None or last[0] is not samples:
            last = cls._last = (samples, cls(samples))
        return last[1]

    def __init__(self, samples: SampleBatch) -> None:
        self.cells = Cells(samples.cells)
        self.samples = samples
        self._order: np.ndarray | None = None
        if samples.by_cell is not None:  # the history's batch: sorted so already
            self.code, self.t, self.v, self.i = samples.by_cell
        else:
            order = self.order()
            self.code = samples.cell_id[order]
            self.t, self.v = samples.ts_ns[order], samples.voltage_v[order]
            self.i = samples.current_ka[order]
        self.first = np.r_[True, self.code[1:] != self.code[:-1]]
        self.final = np.r_[self.code[1:] != self.code[:-1], True]
        self.heads = np.flatnonzero(self.first)
        self._steps: tuple[int, list[Resumed], Steps] | None = None

    def order(self) -> np.ndarray:
        """The batch's rows in the order of the sorted columns (sorted once, if ever)."""
        if self._order is None:
            self._order = np.lexsort((self.samples.ts_ns, self.samples.cell_id))
        return self._order

    def steps(self, resumed: list[Resumed], max_gap_ns: int) -> Steps:
        """The intervals ending at each sample, given each cell's sample before the batch.

        ``resumed`` has one entry per cell of the batch, in code order (``heads``). The
        processors keep their own last samples, which are the same ones as long as they
        have seen the same batches: the intervals are made once for all of them, and again
        only for one whose last samples differ (after a recalculation rebased one of them).
        """
        made = self._steps
        if made is None or made[0] != max_gap_ns or made[1] != resumed:
            made = self._steps = (max_gap_ns, resumed, Steps(self, resumed, max_gap_ns))
        return made[2]


@dataclass(init=False)
class Steps:
    """Each sample's interval from its cell's previous sample, the batch's or the one before.

    Per sample: ``t0``, ``v0``, ``i0`` the interval's start, ``has_prev`` whether it has one.
    ``ok`` the integrable ones (in order, no longer than the gap limit), ``rows`` the same
    as an index (a slice when all are: views, not copies). Per integrable interval (the
    ``rows``): ``h`` its hours, ``p0`` and ``p1`` the power U·I at both ends, and ``sums``
    its energy kWh, charge kA·h and covered seconds by the trapezoid rule.
    """

    t0: np.ndarray
    v0: np.ndarray
    i0: np.ndarray
    has_prev: np.ndarray
    ok: np.ndarray
    rows: slice | np.ndarray
    h: np.ndarray
    p0: np.ndarray
    p1: np.ndarray
    sums: list[np.ndarray]

    def __init__(self, s: ByCell, resumed: list[Resumed], max_gap_ns: int) -> None:
        t, v, i = s.t, s.v, s.i
        self.t0, self.v0, self.i0 = np.roll(t, 1), np.roll(v, 1), np.roll(i, 1)
        self.has_prev = ~s.first
        known = [p for p in resumed if p is not None]
        if known:
            rows = s.heads[np.array([p is not None for p in resumed], dtype=bool)]
            self.t0[rows] = [p[0] for p in known]
            self.v0[rows] = [p[1] for p in known]
            self.i0[rows] = [p[2] for p in known]
            self.has_prev[rows] = True
        self.ok = self.has_prev & (t > self.t0) & (t - self.t0 <= max_gap_ns)
        self.rows = slice(None) if self.ok.all() else self.ok
        r = self.rows
        t0, t1, i0, i1 = self.t0[r], t[r], self.i0[r], i[r]
        self.p0, self.p1 = self.v0[r] * i0, v[r] * i1
        self.h = hours(t0, t1)
        self.sums = [
            trapezoids(self.h, self.p0, self.p1),
            trapezoids(self.h, i0, i1),
            seconds(t0, t1),
        ]
