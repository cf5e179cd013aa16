"""The expressions of the rules: compiled once from their checked syntax, evaluated on columns.

The checks of what an expression may say are in ``expression_syntax``; simpleeval then
evaluates the checked tree by walking it itself, with only the operators and functions
given there and here; nothing ever reaches Python's ``eval``.

Numbers are floats throughout: integer literals become floats when compiled, so no
expression can grow a Python integer until memory runs out.

An expression of arithmetic and single comparisons is evaluated once per batch with numpy
columns as its names (the operators are numpy's, and a division by zero gives infinity
instead of raising); and/or/not and chained comparisons need Python truth values, so those
expressions are evaluated row by row.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any, cast

import numpy as np
from simpleeval import SimpleEval

from processors.rules.expression_syntax import (
    OPERATORS,
    ExpressionError,
    names_read,
    parse_expression,
    unknown_name_message,
    unknown_names,
)

__all__ = [
    "CELL_CONSTANTS",
    "SAMPLE_FIELDS",
    "Expression",
    "compile_expression",
]

SAMPLE_FIELDS = ("cell_voltage_v", "line_current_ka", "bath_temp_c", "noise_uohm")
"""The contract's telemetry fields; the first two are in every sample."""

CELL_CONSTANTS = (
    "current_efficiency",
    "baseline_sec_kwh_per_t",
    "anodes_per_cell",
    "sec_savings_kwh_per_t",
    "anode_cycle_days",
    "anode_cycle_tolerance_days",
    "anode_effect_threshold_v",
    "tap_cycle_max_h",
)
"""The numeric settings of a cell's potline, after the potline's target overrides."""

# Each of expression_syntax.FUNCTIONS, on one row's values and on numpy columns.
_SCALAR_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "exp": math.exp,
    "log": math.log,
    "max": max,
    "min": min,
    "round": lambda x, digits=0.0: float(round(x, int(digits))),
    "sqrt": math.sqrt,
}
_VECTOR_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "max": lambda *xs: reduce(np.maximum, xs),
    "min": lambda *xs: reduce(np.minimum, xs),
    "round": lambda x, digits=0.0: np.round(x, int(digits)),
    "sqrt": np.sqrt,
}


def compile_expression(text: str, known: Collection[str]) -> Expression:
    """Check an expression and its names, and compile it for evaluation."""
    tree = parse_expression(text)
    unknown = unknown_names(tree, known)
    if unknown:
        raise ExpressionError(unknown_name_message(unknown[0], known, "not known here"))
    tree = ast.fix_missing_locations(_Floats().visit(tree))
    row_only = any(
        isinstance(node, ast.BoolOp | ast.Not)
        or (isinstance(node, ast.Compare) and len(node.ops) > 1)
        for node in ast.walk(tree)
    )
    return Expression(" ".join(text.split()), tuple(names_read(tree)), not row_only, tree.body)


@dataclass(frozen=True)
class Expression:
    """A checked expression, ready to evaluate on columns of samples."""

    text: str
    names: tuple[str, ...]
    vectorised: bool
    node: ast.expr

    def evaluate(
        self, columns: Mapping[str, np.ndarray], where: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values, missing) for the rows of ``where``.

        ``columns`` maps each of ``names`` to float64 values per row, NaN where the row has
        no such value. ``missing`` flags the rows of ``where`` with an input absent. The
        values are NaN outside ``where`` and on missing rows, and not finite where the
        arithmetic failed (a division by zero, the log of a negative number, an overflow).
        """
        n = len(where)
        missing = np.zeros(n, dtype=bool)
        for name in self.names:
            missing |= np.isnan(columns[name])
        missing &= where
        rows = where & ~missing
        values = np.full(n, np.nan)
        if rows.any():
            compute = self._vector if self.vectorised else self._per_row
            values[rows] = compute(columns, rows)[rows]
        return values, missing

    def _vector(self, columns: Mapping[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        evaluator = _VectorEval(dict(OPERATORS), dict(_VECTOR_FUNCTIONS), dict(columns))
        with np.errstate(all="ignore"):
            try:
                result = evaluator.eval(self.text, previously_parsed=self.node)
            except (ArithmeticError, ValueError, TypeError):
                return self._per_row(columns, rows)  # each row then fails or not on its own
            return np.broadcast_to(np.asarray(result, dtype=np.float64), rows.shape)

    def _per_row(self, columns: Mapping[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        evaluator = SimpleEval(dict(OPERATORS), dict(_SCALAR_FUNCTIONS), {})
        lists = {name: columns[name].tolist() for name in self.names}
        out = np.full(len(rows), np.nan)
        for i in np.flatnonzero(rows).tolist():
            evaluator.names = {name: values[i] for name, values in lists.items()}
            out[i] = self._scalar(evaluator)
        return out

    def _scalar(self, evaluator: SimpleEval) -> float:
        try:
            result = evaluator.eval(self.text, previously_parsed=self.node)
        except (ArithmeticError, ValueError, TypeError):
            # division by zero, log(0), overflow, sqrt(-1); TypeError: a complex number,
            # (-1) ** 0.5, given to a function or a comparison
            return math.nan
        return math.nan if isinstance(result, complex) else float(result)


class _VectorEval(SimpleEval):  # type: ignore[misc]  # simpleeval ships no type information
    """Literals as numpy scalars, so that ``x * (1 / 0)`` is infinite like ``x / 0``.

    An evaluator is made per call: it holds the names, and so is never shared.
    """

    def _eval_constant(self, node: ast.Constant) -> Any:
        return np.float64(cast(float, node.value))  # checked: every literal is a number


class _Floats(ast.NodeTransformer):
    """Integer literals as floats: float arithmetic overflows to an error, never to memory."""

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if type(node.value) is int:
            return ast.copy_location(ast.Constant(float(node.value)), node)
        return node
