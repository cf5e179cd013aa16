"""Derived fields: values computed from each sample by the engineers' expressions.

They belong in the raw ``cell`` measurement beside the sample's own fields, and the raw
lines are written before any processor runs, so the values come out of ``derive``, which
the engine calls on a batch before it encodes the raw lines; the alarms then find them in
the samples' ``extra`` like any other field. ``apply`` is the processor side: it counts
the samples whose derived value is absent, so that an expression failing all day shows on
a board instead of only as holes in a curve.

A value is absent, never an error, when an input is absent (an optional field the
controller did not send, a setting of a potline that is not configured, an earlier derived
field that is itself absent: ``missing_field``) or when the arithmetic fails (a division by
zero, the log of a negative number, an overflow: ``math_error``). Derived values are
floats; a comparison gives 1.0 or 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from processors.model import Batch, FieldValue, Point, SampleBatch
from processors.rules.expression_syntax import CELL_CONSTANTS, SAMPLE_FIELDS
from processors.rules.expressions import Expression, compile_expression

MISSING, MATH_ERROR = "missing_field", "math_error"
REASONS = (MISSING, MATH_ERROR)
MEASUREMENT = "rules"

Failures = dict[tuple[str, str, str], int]
"""Samples without a value, by (rule, potline, reason)."""


class DerivedRule(Protocol):
    """What the processor reads of a ``derived`` rule (``collector.config.rules.DerivedRule``)."""

    @property
    def name(self) -> str:
        """The new field's name."""
        ...

    @property
    def expr(self) -> str:
        """The expression, already checked by the config loader."""
        ...

    @property
    def potlines(self) -> Sequence[str] | None:
        """The potlines it applies to; None for all."""
        ...

    @property
    def fields(self) -> Sequence[str]:
        """The pass-through fields the expression may read."""
        ...


@dataclass(frozen=True)
class Derivation:
    """The derived values of a batch.

    ``extra`` is parallel to the batch's ``extra``: each sample's own extra fields plus its
    derived values, in new dicts (the batch's are not modified); None for a sample that has
    neither.
    """

    extra: list[dict[str, float] | None]
    failures: Failures


@dataclass(frozen=True)
class _Rule:
    name: str
    expression: Expression
    potlines: frozenset[str] | None


class DerivedProcessor:
    """Computes derived fields (``derive``) and counts the absent ones (``apply``)."""

    name = "derived"

    def __init__(
        self, rules: Sequence[DerivedRule], constants: Mapping[str, Mapping[str, float]]
    ) -> None:
        """Compile every expression once.

        ``constants`` maps a potline id to its settings by the names of ``CELL_CONSTANTS``.
        Raises ``ExpressionError`` for an expression the config check would refuse.
        """
        self._constants = constants
        known = {*SAMPLE_FIELDS, *CELL_CONSTANTS}
        self._rules: list[_Rule] = []
        for rule in rules:
            expression = compile_expression(rule.expr, known | set(rule.fields))
            scope = None if rule.potlines is None else frozenset(rule.potlines)
            self._rules.append(_Rule(rule.name, expression, scope))
            known.add(rule.name)

    def derive(self, samples: SampleBatch) -> list[dict[str, float] | None]:
        """The batch's ``extra`` with the derived values added (``processors.base.Deriving``)."""
        return self.derivation(samples).extra

    def derivation(self, samples: SampleBatch) -> Derivation:
        """The batch's ``extra`` with the derived values added, and the failures."""
        values, failures = self._evaluate(samples)
        extra = list(samples.extra)
        if not values:
            return Derivation(extra, failures)
        present = {name: np.isfinite(col) for name, col in values.items()}
        lists = {name: col.tolist() for name, col in values.items()}
        flags = {name: mask.tolist() for name, mask in present.items()}
        for i in np.flatnonzero(np.logical_or.reduce(list(present.values()))).tolist():
            row = dict(extra[i] or {})
            for name, column in lists.items():
                if flags[name][i]:
                    row[name] = column[i]
            extra[i] = row
        return Derivation(extra, failures)

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Add the batch's failures to the running totals; write the totals that changed.

        State: ``{"failures": {rule: {potline: {reason: samples}}}}``, totals since the
        state directory was created. Each (rule, potline) whose totals changed gets a
        ``rules`` point (tags potline, rule; integer fields ``missing_field`` and
        ``math_error``) at the time of the potline's newest sample in the batch.
        """
        _, failures = self._evaluate(batch.samples)
        if not failures:
            return state, []
        totals = {
            rule: {potline: dict(counts) for potline, counts in by_potline.items()}
            for rule, by_potline in (state or {}).get("failures", {}).items()
        }
        for (rule, potline, reason), n in failures.items():
            counts = totals.setdefault(rule, {}).setdefault(potline, {})
            counts[reason] = counts.get(reason, 0) + n
        newest = _newest_by_potline(batch.samples)
        points = []
        for rule, potline in sorted({(rule, potline) for rule, potline, _ in failures}):
            counts = totals[rule][potline]
            fields: dict[str, FieldValue] = {reason: counts.get(reason, 0) for reason in REASONS}
            tags = (("potline", potline), ("rule", rule))
            points.append(Point(MEASUREMENT, tags, fields, newest[potline]))
        return {"failures": totals}, points

    def _evaluate(self, samples: SampleBatch) -> tuple[dict[str, np.ndarray], Failures]:
        """Each rule's values per sample (NaN where absent), in rule order, and the failures."""
        n = len(samples)
        derived: dict[str, np.ndarray] = {}
        failures: Failures = {}
        if n == 0 or not self._rules:
            return derived, failures
        columns = _Columns(samples, self._constants, derived)
        potline_names = sorted({potline for potline, _ in samples.cells})
        code = {potline: k for k, potline in enumerate(potline_names)}
        row_potline = np.array([code[p] for p, _ in samples.cells], dtype=np.int64)[samples.cell_id]
        for rule in self._rules:
            where = _in_scope(rule.potlines, samples)
            inputs = {name: columns[name] for name in rule.expression.names}
            values, missing = rule.expression.evaluate(inputs, where)
            failed = where & ~missing & ~np.isfinite(values)
            values[~np.isfinite(values)] = np.nan
            derived[rule.name] = values
            for reason, mask in ((MISSING, missing), (MATH_ERROR, failed)):
                counts = np.bincount(row_potline[mask], minlength=len(potline_names))
                for k in np.flatnonzero(counts).tolist():
                    failures[(rule.name, potline_names[k], reason)] = int(counts[k])
        return derived, failures


class _Columns:
    """The float64 column of each name an expression reads, NaN where a sample lacks it.

    Built on first use, once per batch: most batches need only a few of the names.
    """

    def __init__(
        self,
        samples: SampleBatch,
        constants: Mapping[str, Mapping[str, float]],
        derived: Mapping[str, np.ndarray],
    ) -> None:
        self._samples = samples
        self._constants = constants
        self._derived = derived
        self._built: dict[str, np.ndarray] = {
            "cell_voltage_v": samples.voltage_v,
            "line_current_ka": samples.current_ka,
        }

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._derived:  # a derived field replaces a payload key of its name
            return self._derived[name]
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def _build(self, name: str) -> np.ndarray:
        s = self._samples
        if name in CELL_CONSTANTS:
            per_cell = [
                self._constants.get(potline, {}).get(name, np.nan) for potline, _ in s.cells
            ]
            column: np.ndarray = np.array(per_cell, dtype=np.float64)[s.cell_id]
            return column
        values = (e.get(name, np.nan) if e else np.nan for e in s.extra)
        return np.fromiter(values, dtype=np.float64, count=len(s))


def _in_scope(potlines: frozenset[str] | None, samples: SampleBatch) -> np.ndarray:
    if potlines is None:
        return np.ones(len(samples), dtype=bool)
    per_cell = np.array([potline in potlines for potline, _ in samples.cells], dtype=bool)
    mask: np.ndarray = per_cell[samples.cell_id]
    return mask


def _newest_by_potline(samples: SampleBatch) -> dict[str, int]:
    per_cell = np.full(len(samples.cells), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(per_cell, samples.cell_id, samples.ts_ns)
    newest: dict[str, int] = {}
    for (potline, _), ts in zip(samples.cells, per_cell.tolist(), strict=True):
        newest[potline] = max(newest.get(potline, ts), ts)
    return newest
