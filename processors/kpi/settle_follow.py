"""One anode change followed minute by minute until it settles (see ``anode_settle``).

The judgement is incremental, so a change costs one minute's work each time its cell closes
a minute, and its progress (level, current run, peaks, next minute) is plain numbers that
the checkpoint holds: a restart continues it exactly. The same closed minutes give the same
verdict whether they are judged in one call or in many.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processors.kpi.ledger import CellKey
from processors.kpi.settle_ring import MISSING, PRE_MIN, View
from processors.model import FieldValue

MIN_PRE = 20
"""The fewest reported minutes of the 30 before a change that make its level."""
RUN_MIN = 10
"""A change has settled once this many minutes running are in band."""


@dataclass(slots=True)
class Change:
    """A followed change and how far its judgement has got (µV, minutes after it)."""

    cell: CellKey
    ts_ns: int
    anode: int
    tags: tuple[tuple[str, str], ...]
    crew: str | None
    minute: int  # the change's minute, c
    level: float | None = None  # the mean before it, µV; None until minute c−1 closed
    k: int = 1  # the next minute to judge, c + k
    run: int = 0  # the first minute of the current in-band run; 0: none
    run_peak: float = 0.0  # the largest excess within that run
    peak: float = 0.0  # the largest excess before that run
    settle_min: int = 0
    settled: bool = False

    @property
    def key(self) -> tuple[CellKey, int, int]:
        """Cell, time and anode position: two changes of a cell at one time are two."""
        return self.cell, self.ts_ns, self.anode

    def fields(self) -> dict[str, FieldValue]:
        """The settle fields of the change's ``anode_change`` point."""
        fields: dict[str, FieldValue] = {
            "settle_min": self.settle_min,
            "peak_excess_mv": self.peak / 1000.0,
            "settled": self.settled,
        }
        if self.crew is not None:
            fields["crew"] = self.crew
        return fields

    def to_json(self) -> dict[str, Any]:
        """The checkpoint form."""
        return {
            "cell": list(self.cell),
            "ts_ns": self.ts_ns,
            "anode": self.anode,
            "tags": [list(t) for t in self.tags],
            "crew": self.crew,
            "minute": self.minute,
            "level": self.level,
            "k": self.k,
            "run": self.run,
            "run_peak": self.run_peak,
            "peak": self.peak,
        }

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Change:
        """The change a checkpoint holds."""
        tags = tuple((name, value) for name, value in data["tags"])
        return cls(**{**data, "cell": CellKey(*data["cell"]), "tags": tags})


def follow(change: Change, view: View, band_uv: float, max_min: int) -> bool | None:
    """Judge the closed minutes of ``view`` not judged yet.

    True: decided (``settle_min``, ``peak``, ``settled`` set); False: the change cannot be
    judged (too few minutes before it); None: wait for more minutes.
    """
    c = change.minute
    if change.level is None:
        if view.end < c:
            return None  # minute c−1 is still open
        before = view.at(c - PRE_MIN, c)
        reported = before[before != MISSING]
        if len(reported) < MIN_PRE:
            return False
        change.level = int(reported.sum()) / len(reported)
    level = change.level
    last = min(view.end - 1 - c, max_min)
    for k, v in enumerate(view.at(c + change.k, c + last + 1).tolist(), start=change.k):
        if v != MISSING and abs(v - level) <= band_uv:
            change.run = change.run or k
            change.run_peak = max(change.run_peak, v - level)
            if k - change.run + 1 == RUN_MIN:
                change.settle_min, change.settled = change.run, True
                return True
        else:
            excess = v - level if v != MISSING else 0.0
            change.peak = max(change.peak, change.run_peak, excess)
            change.run, change.run_peak = 0, 0.0
    change.k = max(change.k, last + 1)
    if change.k <= max_min:
        return None  # a shorter maximum reloaded while it was followed ends it now
    change.peak = max(change.peak, change.run_peak)
    change.settle_min, change.settled = max_min, False
    return True


@dataclass(slots=True)
class Settles:
    """A cell's decided changes of a month; an unsettled one counts at the maximum."""

    changes: int = 0
    settle_min_sum: int = 0
    settle_min_max: int = 0
    unsettled: int = 0

    def add(self, settle_min: int, settled: bool) -> None:
        """Count one decided change."""
        self.changes += 1
        self.settle_min_sum += settle_min
        self.settle_min_max = max(self.settle_min_max, settle_min)
        self.unsettled += int(not settled)

    def fields(self) -> dict[str, FieldValue]:
        """The ``anode_settle`` point's fields."""
        return {
            "changes": self.changes,
            "settle_min_mean": self.settle_min_sum / self.changes,
            "settle_min_max": self.settle_min_max,
            "unsettled": self.unsettled,
        }

    def to_json(self) -> list[int]:
        """The checkpoint form: the four counts."""
        return [self.changes, self.settle_min_sum, self.settle_min_max, self.unsettled]
