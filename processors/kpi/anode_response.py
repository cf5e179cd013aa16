"""The voltage response of a cell to an anode change: its level before, peak and recovery after.

A new anode is cold and takes its share of the current slowly, so the cell's voltage leaves
its level and comes back; how far and how fast tell how well the change was made. The
level before a change is kept per cell in pre-window buckets of the processor state, since
a change often arrives in a later batch than the samples before it, and a change is
followed across batches until it recovers or its window ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from processors.kpi.ledger import CellKey, flat
from processors.model import Batch, FieldValue, Point, SampleBatch
from processors.ordering import by_cell

NS = 1_000_000_000


@dataclass(frozen=True)
class Response:
    """How a cell's voltage response to a change is followed."""

    band_v: float
    window_s: float
    pre_window_s: float


class Position(NamedTuple):
    """An anode position of a cell."""

    potline: str
    cell: str
    anode: int


@dataclass(slots=True)
class Bucket:
    """A cell's voltage sum over one pre-window bucket."""

    sum_v: float = 0.0
    samples: int = 0


@dataclass(slots=True)
class Followed:
    """A change whose voltage response is being followed; its point, to rewrite when known."""

    position: Position
    ts_ns: int
    pre_v: float
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, FieldValue]
    peak_v: float = 0.0
    left: bool = False  # the voltage left the band

    @property
    def cell(self) -> CellKey:
        """The cell whose response is followed."""
        return CellKey(self.position.potline, self.position.cell)

    def to_json(self) -> dict[str, Any]:
        """The checkpoint form."""
        return {
            "position": list(self.position),
            "ts_ns": self.ts_ns,
            "pre_v": self.pre_v,
            "tags": [list(tag) for tag in self.tags],
            "fields": dict(self.fields),
            "peak_v": self.peak_v,
            "left": self.left,
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Followed:
        """The followed change a checkpoint holds."""
        tags = tuple((name, value) for name, value in data["tags"])
        position = Position(*data["position"])
        return cls(**{**data, "position": position, "tags": tags, "fields": dict(data["fields"])})


Levels = dict[CellKey, dict[int, Bucket]]


def buckets_of(data: Mapping[str, Any]) -> dict[int, Bucket]:
    """A cell's pre-window buckets from the checkpoint."""
    return {int(b): Bucket(**x) for b, x in data.items()}


def buckets_to_json(buckets: Mapping[int, Bucket]) -> dict[str, Any]:
    """The checkpoint form of a cell's pre-window buckets."""
    return {str(b): flat(x) for b, x in buckets.items()}


def follow(
    pending: dict[tuple[Position, int], Followed],
    cells: Mapping[CellKey, tuple[np.ndarray, np.ndarray]],
    band_v: float,
    window_ns: int,
) -> list[Point]:
    """Peak deviation and recovery of each followed change; written once known.

    Recovered means back within the band after having left it; a response that never
    leaves the band is written with its peak and no recovery when the window ends.
    """
    points = []
    for key, f in sorted(pending.items()):
        t, v = cells.get(f.cell, (np.zeros(0, np.int64), np.zeros(0)))
        newest = int(t[-1]) if len(t) else None
        after = (t > f.ts_ns) & (t <= f.ts_ns + window_ns)
        t, dev = t[after], np.abs(v[after] - f.pre_v)
        outside = dev > band_v
        recovered_at = None
        if f.left or outside.any():
            first_out = 0 if f.left else int(np.argmax(outside))
            back = np.flatnonzero(~outside[first_out:])
            stop = first_out + int(back[0]) if len(back) else len(t)
            f.peak_v = max(f.peak_v, float(dev[:stop].max()) if stop else 0.0)
            f.left = True
            recovered_at = int(t[stop]) if len(back) else None
        elif len(dev):
            f.peak_v = max(f.peak_v, float(dev.max()))
        window_over = newest is not None and newest >= f.ts_ns + window_ns
        if recovered_at is None and not window_over:
            continue
        del pending[key]
        fields = {**f.fields, "peak_dev_mv": f.peak_v * 1000.0}
        if recovered_at is not None:
            fields["recovery_min"] = (recovered_at - f.ts_ns) / NS / 60.0
        points.append(Point("anode_change", f.tags, fields, f.ts_ns))
    return points


def cell_samples(batch: Batch) -> dict[CellKey, tuple[np.ndarray, np.ndarray]]:
    """Each cell's (ts, voltage) of the batch, in time order."""
    names = batch.samples.cells
    return {CellKey(*names[c]): (t, v) for c, t, v in by_cell(batch.samples)}


def level_before(
    buckets: Mapping[int, Bucket],
    samples: tuple[np.ndarray, np.ndarray] | None,
    t_change: int,
    bucket_ns: int,
) -> float | None:
    """Mean voltage over the current and the previous pre-window bucket before a change."""
    first = t_change // bucket_ns - 1
    total = sum(x.sum_v for b, x in buckets.items() if b >= first)
    count = sum(x.samples for b, x in buckets.items() if b >= first)
    if samples is not None:
        t, v = samples
        inside = (t < t_change) & (t // bucket_ns >= first)
        total += float(v[inside].sum())
        count += int(inside.sum())
    return total / count if count else None


def update_levels(levels: Levels, samples: SampleBatch, bucket_ns: int) -> None:
    """Add the batch to each cell's pre-window buckets, keeping the newest two.

    One sort for the whole batch: per-cell numpy calls would cost more than the sums once
    a batch spreads a few samples over hundreds of cells.
    """
    if not len(samples):
        return
    bucket = samples.ts_ns // bucket_ns
    order = np.lexsort((bucket, samples.cell_id))
    code, b, v = samples.cell_id[order], bucket[order], samples.voltage_v[order]
    starts = np.flatnonzero(np.r_[True, (code[1:] != code[:-1]) | (b[1:] != b[:-1])])
    sums = np.add.reduceat(v, starts)
    counts = np.diff(np.r_[starts, len(code)])
    names = samples.cells
    touched = set()
    for c, k, total, n in zip(
        code[starts].tolist(), b[starts].tolist(), sums.tolist(), counts.tolist(), strict=True
    ):
        key = CellKey(*names[c])
        acc = levels.setdefault(key, {}).setdefault(k, Bucket())
        acc.sum_v += total
        acc.samples += n
        touched.add(key)
    for key in touched:
        buckets = levels[key]
        for old in sorted(buckets)[:-2]:
            del buckets[old]
