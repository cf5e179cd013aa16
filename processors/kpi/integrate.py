"""Integration of cell telemetry over periods: the shared core of the KPI processors.

∫U·I dt (energy) and ∫I dt (charge) over the intervals between consecutive in-order
samples of a cell no further apart than the gap limit, by the trapezoid rule; an interval
that straddles a period boundary is split there with U·I and I interpolated linearly.

With anode-effect thresholds, also the effects' extra energy (contract 5.3): over each
interval with an end above the threshold, ∫ (U − U_before) · I dt by the same rule, where
U_before is the cell's last voltage at or below the threshold, the level before the effect
began. That is the whole excursion, from the last sample before the effect to the first one
after it, so 120 s at 31.5 V instead of 4.31 V at 321.5 kA is (31.5 − 4.31) × 321.5 × 120 s
= 291.4 kWh, as domain.md counts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from processors.kpi.by_cell import ByCell, Cells
from processors.kpi.energy import interval_sums, trapezoids
from processors.kpi.ledger import CellKey, cells_from_json, cells_to_json
from processors.kpi.periods import Calendar, period_index
from processors.model import SampleBatch


class LastSample(NamedTuple):
    """A cell's newest sample, which opens its next interval.

    ``base_v``: the cell's last voltage at or below its anode-effect threshold (None before
    one was seen, or without thresholds), so an effect that spans batches keeps its base.
    """

    ts_ns: int
    voltage_v: float
    current_ka: float
    base_v: float | None = None


LastSamples = dict[CellKey, LastSample]


def last_to_json(last: LastSamples) -> dict[str, Any]:
    """``{potline: {cell: {ts_ns, voltage_v, current_ka}}}``."""
    return cells_to_json(last, _last_json)


def _last_json(s: LastSample) -> dict[str, Any]:
    """``LastSample._asdict``, without its zip over the field names: one per cell."""
    return {"ts_ns": s[0], "voltage_v": s[1], "current_ka": s[2], "base_v": s[3]}


def last_from_json(data: Mapping[str, Any] | None) -> LastSamples:
    """The samples ``last_to_json`` wrote."""
    return cells_from_json(data, lambda d: LastSample(**d))


@dataclass(frozen=True, slots=True)
class PeriodSums:
    """What one batch adds to one period of one potline: a column per sum, a row per cell.

    One object per potline and period, not per cell: 400 cells in three kinds of period
    made 1200 objects per batch, each unpacked again by the processors, a third of the
    worker's time on batches of one second of samples.
    """

    potline: str
    kind: str
    start_ns: int
    end_ns: int
    cells: list[str]
    energy_kwh: list[float]
    charge_kah: list[float]
    covered_s: list[float]
    ae_energy_kwh: list[float]


def integrate(
    samples: SampleBatch,
    last: LastSamples,
    calendar: Calendar,
    kinds: Sequence[str],
    max_gap_ns: int,
    counts: Callable[[str], bool] = lambda potline: True,
    thresholds: Mapping[str, float] | None = None,
) -> list[PeriodSums]:
    """The sums of a batch of in-order samples; ``last`` is updated in place.

    ``last`` holds each cell's last sample before the batch, which opens its first
    interval; ``counts`` says which potlines are integrated at all; ``thresholds`` (the
    anode-effect voltage per potline) adds the effects' extra energy.
    """
    if len(samples) == 0:
        return []
    s = ByCell.of(samples)
    cells, code, v, i = s.cells, s.code, s.v, s.i
    prevs = [last.get(cells.keys[c]) for c in code[s.heads].tolist()]
    st = s.steps([None if p is None else p[:3] for p in prevs], max_gap_ns)
    prior_base = np.full(len(cells.keys), np.nan)
    if thresholds is not None:
        prior_base[code[s.heads]] = [
            np.nan if p is None or p.base_v is None else p.base_v for p in prevs
        ]
    effect = _Effects(cells, code, v, st.v0, st.has_prev, prior_base, thresholds)
    final = s.final
    bases = [None if math.isnan(b) else b for b in effect.base_after[final].tolist()]
    new = tuple.__new__  # LastSample(…) is a Python-level __new__, a tenth of integrate's time
    newest = [
        new(LastSample, x)
        for x in zip(s.t[final].tolist(), v[final].tolist(), i[final].tolist(), bases, strict=True)
    ]
    last.update(zip([cells.keys[c] for c in code[final].tolist()], newest, strict=True))
    counted = np.array([counts(p) for p in cells.potlines], dtype=bool)
    rows, h, p0, p1, sums = st.rows, st.h, st.p0, st.p1, st.sums
    if not counted.all():  # a potline not integrated: its intervals taken out
        rows = st.ok & counted[cells.pot[code]]
        r = rows[st.rows]
        h, p0, p1, sums = h[r], p0[r], p1[r], [column[r] for column in sums]
    if not len(h):
        return []
    a0, a1 = effect.powers(st.i0, i)
    iv = _Intervals(
        code[rows],
        st.t0[rows],
        s.t[rows],
        p0,
        p1,
        st.i0[rows],
        i[rows],
        a0[rows],
        a1[rows],
        thresholds is not None,
    )
    extra = trapezoids(h, iv.a0, iv.a1) if iv.effects else np.zeros(len(h))
    alone: list[tuple[np.ndarray, list[list[float]]]] = []
    whole = [*sums, extra]
    return [s for kind in kinds for s in _split(calendar, kind, cells, iv, whole, alone)]


class _Effects:
    """Which intervals are part of an anode effect, and the level before it began.

    Per sample (sorted by cell and time): ``base_before`` is the base of the interval that
    ends at it (the cell's last voltage at or below the threshold before that interval),
    ``base_after`` the base once the sample is taken.
    """

    def __init__(
        self,
        cells: Cells,
        code: np.ndarray,
        v: np.ndarray,
        v0: np.ndarray,
        has_prev: np.ndarray,
        prior_base: np.ndarray,
        thresholds: Mapping[str, float] | None,
    ) -> None:
        self.v, self.v0 = v, v0
        self.none = thresholds is None
        if thresholds is None:
            self.above = self.above0 = np.zeros(len(v), dtype=bool)
            self.base_before = self.base_after = np.full(len(v), np.nan)
            return
        limits = np.array([thresholds.get(p, np.inf) for p in cells.potlines])
        limit = limits[cells.pot[code]]
        self.above, self.above0 = v > limit, has_prev & (v0 > limit)
        self.base_after = _carried(np.where(self.above, np.nan, v), code, prior_base)
        starts = np.r_[True, code[1:] != code[:-1]]
        before = np.roll(self.base_after, 1)
        before[starts] = prior_base[code[starts]]
        self.base_before = before

    def powers(self, i0: np.ndarray, i1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(U − U_before) · I at both ends of each interval that is part of an effect, else 0."""
        if self.none:
            zeros = np.zeros(len(self.v))
            return zeros, zeros
        inside = (self.above | self.above0) & ~np.isnan(self.base_before)
        base = np.where(inside, self.base_before, 0.0)
        p0 = np.where(inside, (self.v0 - base) * i0, 0.0)
        p1 = np.where(inside, (self.v - base) * i1, 0.0)
        return p0, p1


def _carried(values: np.ndarray, code: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per row, the newest non-NaN value of its cell so far, else the cell's prior.

    The rows are sorted by cell, so the running maximum of the non-NaN rows' indices is
    the newest such row; one before the first row of the cell belongs to another cell.
    No sort is needed, as a grouped running maximum of arbitrary values would.
    """
    rows = np.arange(len(values))
    run = np.maximum.accumulate(np.where(np.isnan(values), -1, rows))
    head = np.maximum.accumulate(np.where(np.r_[True, code[1:] != code[:-1]], rows, 0))
    carried: np.ndarray = np.where(run >= head, values[np.maximum(run, 0)], prior[code])
    return carried


@dataclass(frozen=True)
class _Intervals:
    """The integrable intervals of a batch, with their whole-interval integrals."""

    code: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    p0: np.ndarray
    p1: np.ndarray
    i0: np.ndarray
    i1: np.ndarray
    a0: np.ndarray  # (U − U_before) · I of an anode effect, 0 outside one
    a1: np.ndarray

    effects: bool  # False: no thresholds, a0 and a1 are all 0


def _split(
    calendar: Calendar,
    kind: str,
    cells: Cells,
    iv: _Intervals,
    whole: list[np.ndarray],
    alone: list[tuple[np.ndarray, list[list[float]]]],
) -> list[PeriodSums]:
    """Sum the pieces per cell and period, and cut the sums per potline and period.

    The sort key orders by period, potline, then cell code, so each ``PeriodSums`` is a
    contiguous run of the sums, and a potline's cells add in code order as before.

    A batch inside one period of this kind (nearly every batch: a second, or an hour of a
    recalculation, in a shift) has the same sums per cell for every such kind: they are
    made once per batch (``alone``), not once per kind.
    """
    t0, t1 = int(iv.t0.min()), int(iv.t1.max())
    starts = calendar.starts(kind, t0, t1)
    n, lines = len(cells.names), len(cells.potlines)
    (k,), (k_end,) = period_index(starts, [t0]), period_index(starts, [t1], end=True)
    if k == k_end:
        if not alone:
            alone.append(_grouped(cells.pot[iv.code] * n + iv.code, whole))
        uniq, totals = alone[0]
        uniq = uniq + k * lines * n
    else:
        code, period, parts = _pieces(starts, iv, whole)
        uniq, totals = _grouped((period * lines + cells.pot[code]) * n + code, parts)
    group = uniq // n
    cut = (np.flatnonzero(group[1:] != group[:-1]) + 1).tolist()
    names = [cells.names[c] for c in (uniq % n).tolist()]
    out = []
    for lo, hi, g in zip([0, *cut], [*cut, len(uniq)], group[[0, *cut]].tolist(), strict=True):
        k, p = divmod(g, lines)
        e, q, s, x = (column[lo:hi] for column in totals)
        out.append(
            PeriodSums(
                cells.potlines[p],
                kind,
                int(starts[k]),
                int(starts[k + 1]),
                names[lo:hi],
                e,
                q,
                s,
                x,
            )
        )
    return out


def _grouped(key: np.ndarray, parts: list[np.ndarray]) -> tuple[np.ndarray, list[list[float]]]:
    """The keys present, in order, and each part summed per key (in the rows' order).

    The keys are small (period × potline × cell of one batch), so they index a count
    directly: two passes over the rows, where ``np.unique`` sorted them, per kind of
    period and processor (half of a day's recalculation). A batch spanning so many periods
    that the keys would not be small is grouped by sorting.
    """
    size = int(key.max()) + 1
    if size > 4 * len(key) + 4096:
        uniq, inv = np.unique(key, return_inverse=True)
        return uniq, [np.bincount(inv, weights=part).tolist() for part in parts]
    uniq = np.flatnonzero(np.bincount(key, minlength=size))
    return uniq, [np.bincount(key, weights=part, minlength=size)[uniq].tolist() for part in parts]


def _pieces(
    starts: np.ndarray, iv: _Intervals, whole: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(cell code, period index, [energy, charge, covered, effects' extra]) of each piece.

    The few intervals that cross a boundary are split there. An interval longer than a
    period (a ``max_gap_s`` above the shortest shift) is cut at every boundary it crosses.
    The first piece stays in the interval's place and the others are appended, so the sums
    add in the same order whatever the number of pieces.
    """
    n = len(starts)
    k0 = period_index(starts, iv.t0)
    k1 = period_index(starts, iv.t1, end=True)
    cross = np.flatnonzero(k1 > k0)
    if not len(cross):  # the usual batch of a shift, day or month: nothing to split or copy
        return iv.code, k0, whole
    codes, periods, sums = [iv.code], [k0], [[w.copy() for w in whole]]
    parts = (iv.code, iv.t0, iv.t1, iv.p0, iv.p1, iv.i0, iv.i1, iv.a0, iv.a1, k0, k1)
    c, t0, t1, p0, p1, i0, i1, e0, e1, k, kend = (x[cross] for x in parts)
    a, pa, ia, ea = t0, p0, i0, e0  # where the next piece starts
    first = True
    while len(c):
        inner = k < kend
        b = np.where(inner, starts[np.minimum(k + 1, n - 1)], t1)
        frac = (b - t0) / (t1 - t0)
        pb = np.where(inner, p0 + frac * (p1 - p0), p1)
        ib = np.where(inner, i0 + frac * (i1 - i0), i1)
        eb = np.where(inner, e0 + frac * (e1 - e0), e1)
        piece = interval_sums(a, b, (pa, pb), (ia, ib), (ea, eb), iv.effects)
        if first:
            for q in range(len(piece)):
                sums[0][q][cross] = piece[q]
            first = False
        else:
            codes.append(c)
            periods.append(k)
            sums.append(piece)
        rest = (c, t0, t1, p0, p1, i0, i1, e0, e1, kend)
        c, t0, t1, p0, p1, i0, i1, e0, e1, kend = (x[inner] for x in rest)
        a, pa, ia, ea, k = b[inner], pb[inner], ib[inner], eb[inner], k[inner] + 1
    columns = [np.concatenate([s[q] for s in sums]) for q in range(len(whole))]
    return np.concatenate(codes), np.concatenate(periods), columns
