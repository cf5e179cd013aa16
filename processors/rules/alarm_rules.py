"""The alarm rules as the processor reads them, compiled, and the ``alarm`` point.

Apart from the processor so that the limit and the stale alarms, which walk the samples
in different orders, share one reading of a rule and one point format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from processors.model import FieldValue, Point

NS = 1_000_000_000
NEVER = int(np.iinfo(np.int64).min)
RAISED, CLEARED = "raised", "cleared"
MEASUREMENT = "alarm"
Limit = float | str
"""A limit: a number, or the name of a potline setting (``anode_effect_threshold_v``)."""
COLUMNS = {"cell_voltage_v": "voltage_v", "line_current_ka": "current_ka"}
"""Contract fields that a ``SampleBatch`` keeps as columns rather than in ``extra``."""


class AlarmRule(Protocol):
    """What the processor reads of an ``alarms`` rule (``collector.config.rules.AlarmRule``)."""

    @property
    def name(self) -> str:
        """The ``rule`` tag."""
        ...

    @property
    def severity(self) -> str:
        """The ``severity`` tag."""
        ...

    @property
    def field(self) -> str | None:
        """The watched field; None for a stale alarm."""
        ...

    @property
    def above(self) -> Limit | None:
        """Raised above this value."""
        ...

    @property
    def below(self) -> Limit | None:
        """Raised below this value."""
        ...

    @property
    def outside(self) -> Sequence[Limit] | None:
        """Raised outside this [low, high] band."""
        ...

    @property
    def hold_s(self) -> float:
        """How long the condition must hold first."""
        ...

    @property
    def stale_s(self) -> float | None:
        """For a stale alarm: the silence that raises it."""
        ...

    @property
    def potlines(self) -> Sequence[str] | None:
        """Only these potlines; None for all."""
        ...

    @property
    def cells(self) -> Sequence[str] | None:
        """Only these cells (the ``cell`` tag); None for all."""
        ...


@dataclass(frozen=True)
class Alarm:
    """A rule compiled: which side of which limits raises it."""

    name: str
    severity: str
    field: str
    low: Limit | None  # raised below it
    high: Limit | None  # raised above it
    hold_ns: int
    stale_s: float
    potlines: frozenset[str] | None
    cells: frozenset[str] | None

    @classmethod
    def of(cls, rule: AlarmRule) -> Alarm:
        """The alarm of a validated rule, its limits resolved."""
        band = rule.outside or (None, None)
        return cls(
            rule.name,
            rule.severity,
            rule.field or "",
            rule.below if rule.below is not None else band[0],
            rule.above if rule.above is not None else band[1],
            int(rule.hold_s * NS),
            rule.stale_s or 0.0,
            None if rule.potlines is None else frozenset(rule.potlines),
            None if rule.cells is None else frozenset(rule.cells),
        )

    @property
    def is_stale(self) -> bool:
        """Whether it watches for a cell that stopped reporting rather than a limit."""
        return self.stale_s > 0

    def applies(self, potline: str, cell: str) -> bool:
        """Whether the rule watches this cell."""
        return (self.potlines is None or potline in self.potlines) and (
            self.cells is None or cell in self.cells
        )

    def scope(self, cells: Sequence[tuple[str, str]]) -> np.ndarray:
        """Which of the cells the rule watches (all, without a cell or potline list)."""
        if self.potlines is None and self.cells is None:
            return np.ones(len(cells), dtype=bool)
        return np.array([self.applies(potline, cell) for potline, cell in cells], dtype=bool)

    def holds(self, values: np.ndarray, limit: Callable[[Limit], Any]) -> np.ndarray:
        """Where the condition holds; ``limit`` gives a limit's value per row."""
        out = np.zeros(len(values), dtype=bool)
        if self.low is not None:
            out |= values < limit(self.low)
        if self.high is not None:
            out |= values > limit(self.high)
        return out

    def point(self, where: tuple[str, str], state: str, value: float | None, time_ns: int) -> Point:
        """The ``alarm`` point of a transition of this alarm on one cell."""
        return alarm_point(where, self.name, self.severity, state, value, time_ns)


def alarm_point(
    where: tuple[str, str], rule: str, severity: str, state: str, value: float | None, ns: int
) -> Point:
    """The ``alarm`` point of one transition of a cell under a rule."""
    tags = (("potline", where[0]), ("cell", where[1]), ("rule", rule), ("severity", severity))
    fields: dict[str, FieldValue] = {"state": state}
    if value is not None:
        fields["value"] = float(value)
    return Point(MEASUREMENT, tags, fields, int(ns))
