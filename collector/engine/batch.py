"""From accepted rows to the typed batch the processors see: one way, pure, no I/O.

The engine (``cellmon run``, ``cellmon replay``) and ``cellmon check --sample`` both go
through these functions, so the sample check treats a message exactly as the pipeline
does: the same de-duplication identity, the same derived fields on every sample (late ones
included, since they are written raw), the same late samples left out of the KPIs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from processors.base import Deriving
from processors.model import UNTIMED, SampleBatch
from processors.ordering import late_mask

Extra = dict[str, float] | None


def sample_key(potline: str, cell: str, ts_ns: int) -> tuple[str, str, int]:
    """What makes two samples the same sample (the inbox's unique key): a QoS 1 redelivery."""
    return (potline, cell, ts_ns)


def first_seen(keys: Sequence[tuple[str, str, int]]) -> list[bool]:
    """For each sample key in arrival order: True the first time, False for a duplicate."""
    seen: set[tuple[str, str, int]] = set()
    out = []
    for key in keys:
        out.append(key not in seen)
        seen.add(key)
    return out


def empty_batch() -> SampleBatch:
    """A batch of no samples (a batch of events only)."""
    i8, f8 = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return SampleBatch([], i8, i8, f8, f8, [])


def sample_batch(
    name: Callable[[int], tuple[str, str]],
    codes: Sequence[int] | np.ndarray,
    ts_ns: Sequence[int] | np.ndarray,
    voltage_v: Sequence[float],
    current_ka: Sequence[float],
    extra: Sequence[Extra],
    lag: Sequence[int] | None = None,
) -> SampleBatch:
    """A batch of samples in arrival order; ``name(c)`` is (potline, cell) of code ``c``.

    Codes may be any integers (the inbox's cell ids): the batch numbers its cells 0..n-1.
    ``lag`` (the inbox's, ``collector.journal.store.lag_code``) gives it its ``arrival_ns``.
    """
    code_arr = np.asarray(codes, dtype=np.int64)
    uniq, local = np.unique(code_arr, return_inverse=True)
    return SampleBatch(
        cells=[name(c) for c in uniq.tolist()],
        cell_id=local.astype(np.int64),
        ts_ns=np.asarray(ts_ns, dtype=np.int64),
        voltage_v=np.asarray(voltage_v, dtype=np.float64),
        current_ka=np.asarray(current_ka, dtype=np.float64),
        extra=list(extra),
        arrival_ns=arrival(ts_ns, lag),
    )


def arrival(ts_ns: Sequence[int] | np.ndarray, lag: Sequence[int] | None) -> np.ndarray | None:
    """Each row's arrival (``ts`` + its lag), ``UNTIMED`` for code 0; None when none is timed.

    Most batches hold arrays (a controller's buffer) or replayed rows only: no column then.
    """
    if lag is None or lag.count(0) == len(lag):  # C speed, on every batch
        return None
    code = np.asarray(lag, dtype=np.int64)
    lag_ns = (code - (code > 0)) * 1_000_000
    return np.where(code != 0, np.asarray(ts_ns, dtype=np.int64) + lag_ns, UNTIMED)


def derived_extra(deriver: Deriving | None, batch: SampleBatch) -> list[Extra]:
    """Each sample's extra fields with the derived ones added, when a processor derives."""
    return list(batch.extra) if deriver is None else deriver.derive(batch)


def cell_key(potline: str, cell: str) -> str:
    """A cell's key in the ordering state (``{potline}/{cell}``, checkpointed as JSON)."""
    return f"{potline}/{cell}"


def in_order(
    batch: SampleBatch, newest: dict[str, int]
) -> tuple[SampleBatch, np.ndarray, dict[str, int]]:
    """(the samples that may be integrated, the late flags, each cell's new newest ``ts``).

    ``newest`` maps cell keys to the newest integrated sample before this batch; it is not
    modified. A late sample stays in the raw data, never in the KPIs.
    """
    keys = [cell_key(*name) for name in batch.cells]
    late, updated = late_mask(batch.cell_id, batch.ts_ns, keys.__getitem__, newest)
    if not late.any():
        return batch, late, updated
    return take(batch, ~late), late, updated


def take(batch: SampleBatch, keep: np.ndarray) -> SampleBatch:
    """The rows where ``keep`` is true, in their order, their cells renumbered to those present."""
    kept = np.flatnonzero(keep).tolist()
    used, local = np.unique(batch.cell_id[keep], return_inverse=True)
    return replace(
        batch,
        cells=[batch.cells[c] for c in used.tolist()],
        cell_id=local.astype(np.int64),
        ts_ns=batch.ts_ns[keep],
        voltage_v=batch.voltage_v[keep],
        current_ka=batch.current_ka[keep],
        extra=[batch.extra[k] for k in kept],
        arrival_ns=None if batch.arrival_ns is None else batch.arrival_ns[keep],
    )


def timed(batch: SampleBatch, late: np.ndarray) -> SampleBatch | None:
    """Every live sample, late ones too, when some late one is live (``Batch.timed``)."""
    arrival = batch.arrival_ns
    if arrival is None or not late.any():
        return None
    live = arrival != UNTIMED
    return take(batch, live) if (live & late).any() else None


def deriver_of(processors: Sequence[Any]) -> Deriving | None:
    """The first processor that derives fields; they go to the raw points too."""
    return next((p for p in processors if isinstance(p, Deriving)), None)
