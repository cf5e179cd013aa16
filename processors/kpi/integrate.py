"""Integration of cell telemetry over periods: the shared core of the KPI processors.

∫U·I dt (energy) and ∫I dt (charge) over the intervals between consecutive in-order
samples of a cell no further apart than the gap limit, by the trapezoid rule; an interval
that straddles a period boundary is split there with U·I and I interpolated linearly.
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

NS = 1_000_000_000


class LastSample(NamedTuple):
    """A cell's newest sample, which opens its next interval."""

    ts_ns: int
    voltage_v: float
    current_ka: float


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


def integrate(
    samples: SampleBatch,
    last: LastSamples,
    calendar: Calendar,
    kinds: Sequence[str],
    max_gap_ns: int,
    counts: Callable[[str], bool] = lambda potline: True,
) -> list[Contribution]:
    """Contributions of a batch of in-order samples; ``last`` is updated in place.

    ``last`` holds each cell's last sample before the batch, which opens its first
    interval; ``counts`` says which potlines are integrated at all.
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
    for j in np.flatnonzero(first).tolist():
        prev = last.get(names[code[j]])
        if prev is not None:
            t0[j], v0[j], i0[j] = prev.ts_ns, prev.voltage_v, prev.current_ka
            has_prev[j] = True
    for j in np.flatnonzero(final).tolist():
        last[names[code[j]]] = LastSample(int(t[j]), float(v[j]), float(i[j]))
    ok = has_prev & (t > t0) & (t - t0 <= max_gap_ns)
    ok &= np.array([counts(n.potline) for n in names], dtype=bool)[code]
    if not ok.any():
        return []
    iv = _Intervals(code[ok], t0[ok], t[ok], v0[ok] * i0[ok], v[ok] * i[ok], i0[ok], i[ok])
    whole = iv.whole()
    return [c for kind in kinds for c in _split(calendar, kind, names, iv, whole)]


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

    def whole(self) -> list[np.ndarray]:
        """Energy kWh, charge kA·h and covered s of each interval."""
        return [
            trapezoids(self.t0, self.t1, self.p0, self.p1),
            trapezoids(self.t0, self.t1, self.i0, self.i1),
            (self.t1 - self.t0) / NS,
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
        parts = (iv.code, iv.t0, iv.t1, iv.p0, iv.p1, iv.i0, iv.i1, k0, k1)
        c, t0, t1, p0, p1, i0, i1, k, kend = (x[cross] for x in parts)
        a, pa, ia = t0, p0, i0  # where the next piece starts
        first = True
        while len(c):
            inner = k < kend
            b = np.where(inner, starts[np.minimum(k + 1, n - 1)], t1)
            frac = (b - t0) / (t1 - t0)
            pb = np.where(inner, p0 + frac * (p1 - p0), p1)
            ib = np.where(inner, i0 + frac * (i1 - i0), i1)
            piece = [trapezoids(a, b, pa, pb), trapezoids(a, b, ia, ib), (b - a) / NS]
            if first:
                for q in range(3):
                    sums[0][q][cross] = piece[q]
                first = False
            else:
                keys.append(c * n + k)
                sums.append(piece)
            c, t0, t1, p0, p1, i0, i1, kend = (x[inner] for x in (c, t0, t1, p0, p1, i0, i1, kend))
            a, pa, ia, k = b[inner], pb[inner], ib[inner], k[inner] + 1
    uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
    totals = [
        np.bincount(inv, weights=np.concatenate([s[q] for s in sums])).tolist() for q in range(3)
    ]
    return [
        Contribution(names[u // n], kind, int(starts[u % n]), int(starts[u % n + 1]), e, q, s)
        for u, e, q, s in zip(uniq.tolist(), *totals, strict=True)
    ]
