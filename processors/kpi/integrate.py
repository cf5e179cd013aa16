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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from processors.kpi.energy import trapezoids
from processors.kpi.ledger import CellKey, cells_from_json, cells_to_json
from processors.kpi.periods import Calendar, period_index
from processors.model import SampleBatch
from processors.ordering import grouped_cummax

NS = 1_000_000_000


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
    return cells_to_json(last, LastSample._asdict)


def last_from_json(data: Mapping[str, Any] | None) -> LastSamples:
    """The samples ``last_to_json`` wrote."""
    return cells_from_json(data, lambda d: LastSample(**d))


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one batch adds to one cell's period."""

    cell: CellKey
    kind: str
    start_ns: int
    end_ns: int
    energy_kwh: float
    charge_kah: float
    covered_s: float
    ae_energy_kwh: float = 0.0


def integrate(
    samples: SampleBatch,
    last: LastSamples,
    calendar: Calendar,
    kinds: Sequence[str],
    max_gap_ns: int,
    counts: Callable[[str], bool] = lambda potline: True,
    thresholds: Mapping[str, float] | None = None,
) -> list[Contribution]:
    """Contributions of a batch of in-order samples; ``last`` is updated in place.

    ``last`` holds each cell's last sample before the batch, which opens its first
    interval; ``counts`` says which potlines are integrated at all; ``thresholds`` (the
    anode-effect voltage per potline) adds the effects' extra energy.
    """
    if len(samples) == 0:
        return []
    names = [CellKey(p, c) for p, c in samples.cells]
    order = np.lexsort((samples.ts_ns, samples.cell_id))
    code = samples.cell_id[order]
    t, v, i = samples.ts_ns[order], samples.voltage_v[order], samples.current_ka[order]
    first = np.r_[True, code[1:] != code[:-1]]
    final = np.r_[code[1:] != code[:-1], True]
    t0, v0, i0 = np.roll(t, 1), np.roll(v, 1), np.roll(i, 1)
    has_prev = ~first
    prior_base = np.full(len(names), np.nan)
    for j in np.flatnonzero(first).tolist():
        prev = last.get(names[code[j]])
        if prev is not None:
            t0[j], v0[j], i0[j] = prev.ts_ns, prev.voltage_v, prev.current_ka
            has_prev[j] = True
            prior_base[code[j]] = np.nan if prev.base_v is None else prev.base_v
    effect = _Effects(names, code, v, v0, has_prev, prior_base, thresholds)
    for j in np.flatnonzero(final).tolist():
        base = effect.base_after[j]
        last[names[code[j]]] = LastSample(
            int(t[j]), float(v[j]), float(i[j]), None if np.isnan(base) else float(base)
        )
    ok = has_prev & (t > t0) & (t - t0 <= max_gap_ns)
    ok &= np.array([counts(n.potline) for n in names], dtype=bool)[code]
    if not ok.any():
        return []
    a0, a1 = effect.powers(i0, i)
    iv = _Intervals(
        code[ok], t0[ok], t[ok], v0[ok] * i0[ok], v[ok] * i[ok], i0[ok], i[ok], a0[ok], a1[ok]
    )
    whole = iv.whole()
    return [c for kind in kinds for c in _split(calendar, kind, names, iv, whole)]


class _Effects:
    """Which intervals are part of an anode effect, and the level before it began.

    Per sample (sorted by cell and time): ``base_before`` is the base of the interval that
    ends at it (the cell's last voltage at or below the threshold before that interval),
    ``base_after`` the base once the sample is taken.
    """

    def __init__(
        self,
        names: list[CellKey],
        code: np.ndarray,
        v: np.ndarray,
        v0: np.ndarray,
        has_prev: np.ndarray,
        prior_base: np.ndarray,
        thresholds: Mapping[str, float] | None,
    ) -> None:
        self.v, self.v0 = v, v0
        if thresholds is None:
            self.above = self.above0 = np.zeros(len(v), dtype=bool)
            self.base_before = self.base_after = np.full(len(v), np.nan)
            return
        limit = np.array([thresholds.get(n.potline, np.inf) for n in names])[code]
        self.above, self.above0 = v > limit, has_prev & (v0 > limit)
        self.base_after = _carried(np.where(self.above, np.nan, v), code, prior_base)
        starts = np.r_[True, code[1:] != code[:-1]]
        before = np.roll(self.base_after, 1)
        before[starts] = prior_base[code[starts]]
        self.base_before = before

    def powers(self, i0: np.ndarray, i1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(U − U_before) · I at both ends of each interval that is part of an effect, else 0."""
        inside = (self.above | self.above0) & ~np.isnan(self.base_before)
        base = np.where(inside, self.base_before, 0.0)
        p0 = np.where(inside, (self.v0 - base) * i0, 0.0)
        p1 = np.where(inside, (self.v - base) * i1, 0.0)
        return p0, p1


def _carried(values: np.ndarray, code: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per row, the newest non-NaN value of its cell so far, else the cell's prior."""
    idx = np.where(np.isnan(values), -1, np.arange(len(values)))
    run = grouped_cummax(idx, code)
    carried: np.ndarray = np.where(run >= 0, values[np.maximum(run, 0)], prior[code])
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

    def whole(self) -> list[np.ndarray]:
        """Energy kWh, charge kA·h, covered s and effects' extra kWh of each interval."""
        return [
            trapezoids(self.t0, self.t1, self.p0, self.p1),
            trapezoids(self.t0, self.t1, self.i0, self.i1),
            (self.t1 - self.t0) / NS,
            trapezoids(self.t0, self.t1, self.a0, self.a1),
        ]


def _split(
    calendar: Calendar, kind: str, names: list[CellKey], iv: _Intervals, whole: list[np.ndarray]
) -> list[Contribution]:
    """Sum the intervals per cell and period; the few that cross boundaries are split.

    An interval longer than a period (a ``max_gap_s`` above the shortest shift) is cut at
    every boundary it crosses. The first piece stays in the interval's place and the others
    are appended, so the sums add in the same order whatever the number of pieces.
    """
    starts = calendar.starts(kind, int(iv.t0.min()), int(iv.t1.max()))
    n = len(starts)
    k0 = period_index(starts, iv.t0)
    k1 = period_index(starts, iv.t1, end=True)
    cross = np.flatnonzero(k1 > k0)
    keys, sums = [iv.code * n + k0], [[w.copy() for w in whole]]
    if len(cross):
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
            piece = [
                trapezoids(a, b, pa, pb),
                trapezoids(a, b, ia, ib),
                (b - a) / NS,
                trapezoids(a, b, ea, eb),
            ]
            if first:
                for q in range(len(piece)):
                    sums[0][q][cross] = piece[q]
                first = False
            else:
                keys.append(c * n + k)
                sums.append(piece)
            rest = (c, t0, t1, p0, p1, i0, i1, e0, e1, kend)
            c, t0, t1, p0, p1, i0, i1, e0, e1, kend = (x[inner] for x in rest)
            a, pa, ia, ea, k = b[inner], pb[inner], ib[inner], eb[inner], k[inner] + 1
    # keys are small (cell × period index): counted in place, no sort of a day's intervals
    every = np.concatenate(keys)
    size = len(names) * n
    uniq = np.flatnonzero(np.bincount(every, minlength=size))
    totals = [
        np.bincount(every, np.concatenate([s[q] for s in sums]), size)[uniq].tolist()
        for q in range(len(whole))
    ]
    return [
        Contribution(names[u // n], kind, int(starts[u % n]), int(starts[u % n + 1]), e, q, s, x)
        for u, e, q, s, x in zip(uniq.tolist(), *totals, strict=True)
    ]
