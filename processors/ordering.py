"""Which samples may be integrated: each cell's samples must move forward in time.

A sample at or before the cell's newest integrated sample is *late* (a controller flushing
an old buffer, or a redelivery beyond the de-duplication window): it is kept in the raw
measurement but never integrated, so energy is never counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from processors.model import SampleBatch

_NEVER = np.iinfo(np.int64).min


def late_mask(
    codes: np.ndarray, ts_ns: np.ndarray, key_of: Callable[[int], str], newest: dict[str, int]
) -> tuple[np.ndarray, dict[str, int]]:
    """Flag late samples of a batch in arrival order; return the flags and the new newest.

    ``codes`` are integer cell codes (one per sample), ``key_of`` names a code's cell in
    ``newest``, which maps cell keys to the newest integrated ``ts_ns`` before this batch
    and is left unmodified. Everything stays int64: nanosecond epochs do not fit a float.
    """
    n = len(ts_ns)
    if n == 0:
        return np.zeros(0, dtype=bool), dict(newest)
    uniq, inv = np.unique(codes, return_inverse=True)
    keys = [key_of(c) for c in uniq.tolist()]
    floor = np.array([newest.get(k, _NEVER) for k in keys], dtype=np.int64)
    order = np.argsort(inv, kind="stable")
    group = inv[order]
    ts = np.asarray(ts_ns, dtype=np.int64)[order]
    starts = np.r_[True, group[1:] != group[:-1]]
    ends = np.r_[group[1:] != group[:-1], True]
    in_order = np.r_[True, ts[1:] > ts[:-1]] | starts
    if in_order.all() and (ts[starts] > floor[group[starts]]).all():
        # the usual case, every cell moving forward: no running maximum to compute
        updated = dict(newest)
        updated.update(zip([keys[g] for g in group[ends].tolist()], ts[ends].tolist(), strict=True))
        return np.zeros(n, dtype=bool), updated
    running = grouped_cummax(np.maximum(ts, floor[group]), group)
    previous = np.empty(n, dtype=np.int64)
    previous[1:] = running[:-1]
    previous[starts] = floor[group[starts]]
    late = np.empty(n, dtype=bool)
    late[order] = ts <= previous
    updated = dict(newest)
    last_keys = [keys[g] for g in group[ends].tolist()]
    updated.update(zip(last_keys, running[ends].tolist(), strict=True))
    return late, updated


def grouped_cummax(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The running maximum of ``values`` within each run of ``group`` (ascending, contiguous).

    numpy has no grouped accumulate, and pandas is a large import for one call. Values are
    replaced by their ranks, so ``group × n + rank`` fits an int64 and only grows from one
    group to the next: a plain running maximum of it never carries across groups.
    """
    if len(values) == 0:
        return values.copy()
    uniq, rank = np.unique(values, return_inverse=True)
    n = len(uniq)
    key = group.astype(np.int64) * n + rank.astype(np.int64)
    result: np.ndarray = uniq[np.maximum.accumulate(key) % n]
    return result


def by_cell(sb: SampleBatch) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(cell index, ts, voltage) per cell, in time order: one sort for the whole batch."""
    order = np.lexsort((sb.ts_ns, sb.cell_id))
    code, t, v = sb.cell_id[order], sb.ts_ns[order], sb.voltage_v[order]
    bounds = np.flatnonzero(np.diff(code)) + 1
    for lo, hi in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(code)].tolist(), strict=True):
        if hi > lo:
            yield int(code[lo]), t[lo:hi], v[lo:hi]
