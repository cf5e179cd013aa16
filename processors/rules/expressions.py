"""The expressions of the rules: checked and compiled once, evaluated safely on columns.

Process engineers write expressions in YAML, so an expression is untrusted text. It is
parsed once, when the rules are loaded, and checked against a short whitelist (names,
numbers, + - * / **, comparisons, and/or/not, seven functions) that is stricter than
simpleeval's own limits: attributes, subscripts, strings, lambdas, comprehensions and
calls of anything else are the ways into Python's internals, so they are refused at
check time with a message an engineer can act on. simpleeval then evaluates the checked
tree by walking it itself, with only the operators and functions given here; nothing ever
reaches Python's ``eval``.

Numbers are floats throughout: integer literals become floats when compiled, so no
expression can grow a Python integer until memory runs out, and an exponent must be a
literal from -100 to 100, so ``10 ** 10 ** 10`` is refused rather than attempted.

An expression of arithmetic and single comparisons is evaluated once per batch with numpy
columns as its names (the operators are numpy's, and a division by zero gives infinity
instead of raising); and/or/not and chained comparisons need Python truth values, so those
expressions are evaluated row by row.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any, cast

import numpy as np
from simpleeval import SimpleEval

__all__ = [
    "CELL_CONSTANTS",
    "FUNCTIONS",
    "SAMPLE_FIELDS",
    "Expression",
    "ExpressionError",
    "compile_expression",
    "parse_expression",
    "unknown_name_message",
    "unknown_names",
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
)
"""The numeric settings of a cell's potline, after the potline's target overrides."""

MAX_LENGTH = 500
MAX_NESTING = 200
"""Operators and calls nested deeper are refused: compiling and evaluating recurse per level."""
MAX_EXPONENT = 100.0
MAX_LITERAL = 1e300

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
FUNCTIONS = tuple(sorted(_SCALAR_FUNCTIONS))
_ARITY = {"abs": (1, 1), "exp": (1, 1), "log": (1, 1), "sqrt": (1, 1), "round": (1, 2)}
_ARITY_DEFAULT = (2, 64)  # min and max

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_STRUCTURE = (ast.Expression, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp)
_ALLOWED = (*_STRUCTURE, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.Call, *_OPERATORS)

_WHAT = {
    ast.Attribute: "attribute access is",
    ast.Subscript: "subscripts are",
    ast.Slice: "subscripts are",
    ast.Lambda: "lambda is",
    ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are",
    ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are",
    ast.List: "lists are",
    ast.Tuple: "tuples are",
    ast.Set: "sets are",
    ast.Dict: "mappings are",
    ast.JoinedStr: "strings are",
    ast.FormattedValue: "strings are",
    ast.IfExp: "conditional expressions (a if c else b) are",
    ast.NamedExpr: "assignment (:=) is",
    ast.Starred: "* unpacking is",
    ast.keyword: "keyword arguments are",
}
_SYMBOL = {
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^ (a power is **)",
    ast.BitAnd: "&",
    ast.Invert: "~",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
_VOCABULARY = (
    "expressions use names, numbers, + - * / **, comparisons, and/or/not "
    f"and the functions {', '.join(FUNCTIONS)}"
)


class ExpressionError(ValueError):
    """An expression that cannot be accepted; the text is meant for the engineer."""


def parse_expression(text: str) -> ast.Expression:
    """The checked syntax tree of an expression whose names are not yet resolved.

    Raises ``ExpressionError`` for a syntax error or anything outside the whitelist.
    """
    source = " ".join(text.split())  # a YAML block scalar may span lines
    if not source:
        msg = "must not be empty"
        raise ExpressionError(msg)
    if len(source) > MAX_LENGTH:
        msg = f"too long: {len(source)} characters, at most {MAX_LENGTH}"
        raise ExpressionError(msg)
    tree = _parse(source)
    for node in ast.walk(tree):
        _check_node(node, source)
    _check_nesting(tree)
    return tree


def unknown_names(tree: ast.Expression, known: Collection[str]) -> list[str]:
    """The names an expression reads that are not in ``known``, in order of appearance."""
    return [name for name in _names(tree) if name not in known]


def unknown_name_message(
    name: str, known: Collection[str], otherwise: str, noun: str = "name"
) -> str:
    """Why a name is refused, with the name that was probably meant."""
    if noun == "name" and name in FUNCTIONS:
        return f"{name!r} is a function: call it, e.g. {name}(cell_voltage_v)"
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"unknown {noun} {name!r}; did you mean {close[0]!r}?"
    return f"unknown {noun} {name!r}: {otherwise}"


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
    return Expression(" ".join(text.split()), tuple(_names(tree)), not row_only, tree.body)


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
        evaluator = _VectorEval(dict(_OPERATORS), dict(_VECTOR_FUNCTIONS), dict(columns))
        with np.errstate(all="ignore"):
            try:
                result = evaluator.eval(self.text, previously_parsed=self.node)
            except (ArithmeticError, ValueError, TypeError):
                return self._per_row(columns, rows)  # each row then fails or not on its own
            return np.broadcast_to(np.asarray(result, dtype=np.float64), rows.shape)

    def _per_row(self, columns: Mapping[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        evaluator = SimpleEval(dict(_OPERATORS), dict(_SCALAR_FUNCTIONS), {})
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


def _parse(source: str) -> ast.Expression:
    try:
        return ast.parse(source, mode="eval")
    except SyntaxError as err:
        if _is_statement(source):
            msg = "a statement, not an expression: import, assignment and the like are not allowed"
            raise ExpressionError(msg) from None
        where = f"column {err.offset}" if err.offset else "the end"
        msg = f"syntax error at {where}: {err.msg}"
        raise ExpressionError(msg) from None
    except (ValueError, RecursionError, MemoryError):
        raise ExpressionError("not a valid expression: " + _VOCABULARY) from None


def _is_statement(source: str) -> bool:
    try:
        ast.parse(source, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _check_node(node: ast.AST, source: str) -> None:
    """Refuse anything but the whitelist; check calls, literals and exponents."""
    if not isinstance(node, _ALLOWED):
        raise ExpressionError(_refusal(node, source))
    if isinstance(node, ast.Call):
        _check_call(node, source)
    elif isinstance(node, ast.Constant):
        _check_literal(node.value)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        _check_exponent(node.right, source)


def _check_nesting(tree: ast.Expression) -> None:
    """Refuse ``- - - … x`` 400 deep: 500 characters parse, but would exhaust Python's stack.

    The compiler's transform and the evaluator recurse once or twice per level of the tree.
    """
    stack: list[tuple[ast.expr, int]] = [(tree.body, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_NESTING:
            msg = f"nested too deeply: at most {MAX_NESTING} levels of operators and calls"
            raise ExpressionError(msg)
        stack.extend(
            (child, level + 1)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.expr)
        )


def _refusal(node: ast.AST, source: str) -> str:
    symbol = _SYMBOL.get(type(node))
    if symbol is not None:
        return f"operator {symbol} is not allowed: {_VOCABULARY}"
    what = _WHAT.get(type(node), f"{type(node).__name__} is")
    segment = ast.get_source_segment(source, node) if isinstance(node, ast.expr) else None
    found = f": {segment}" if segment else ""
    return f"{what} not allowed{found} ({_VOCABULARY})"


def _check_call(node: ast.Call, source: str) -> None:
    if not isinstance(node.func, ast.Name):
        raise ExpressionError(_refusal(node.func, source))
    name = node.func.id
    if name not in FUNCTIONS:
        close = difflib.get_close_matches(name, FUNCTIONS, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?" if close else f"the functions are {', '.join(FUNCTIONS)}"
        )
        msg = f"unknown function {name!r}; {hint}"
        raise ExpressionError(msg)
    if node.keywords:
        msg = f"keyword arguments are not allowed: {ast.unparse(node)}"
        raise ExpressionError(msg)
    low, high = _ARITY.get(name, _ARITY_DEFAULT)
    if not low <= len(node.args) <= high:
        wanted = (
            "1 argument"
            if high == 1
            else "1 or 2 arguments"
            if high == 2
            else "2 or more arguments"
        )
        msg = f"{name}() takes {wanted}, got {len(node.args)}"
        raise ExpressionError(msg)
    if name == "round" and len(node.args) == 2:
        digits = _literal(node.args[1])
        if digits is None or not float(digits).is_integer():
            msg = "round(x, digits): digits must be a whole number, e.g. round(x, 2)"
            raise ExpressionError(msg)


def _check_literal(value: object) -> None:
    if isinstance(value, str | bytes):
        msg = f"strings are not allowed: {_VOCABULARY}"
        raise ExpressionError(msg)
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{value!r} is not a number: {_VOCABULARY}"
        raise ExpressionError(msg)
    if abs(value) > MAX_LITERAL:
        msg = f"number too large (at most {MAX_LITERAL:g})"
        raise ExpressionError(msg)


def _check_exponent(node: ast.expr, source: str) -> None:
    value = _literal(node)
    if value is None or abs(value) > MAX_EXPONENT:
        got = ast.get_source_segment(source, node) or ast.unparse(node)
        msg = (
            f"the exponent must be a number from {-MAX_EXPONENT:g} to {MAX_EXPONENT:g} written "
            f"in the expression, e.g. x ** 2 or x ** 0.5; got ** {got}"
        )
        raise ExpressionError(msg)


def _literal(node: ast.expr) -> float | None:
    """The value of a number written in the expression, with its sign; None for anything else."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return sign * float(value)
        except OverflowError:  # an integer of 400 digits: larger than any limit
            return sign * math.inf
    return None


def _names(tree: ast.AST) -> list[str]:
    """The names read, in order of appearance, each once; called functions are not names."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.id for n in nodes))


class _Floats(ast.NodeTransformer):
    """Integer literals as floats: float arithmetic overflows to an error, never to memory."""

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if type(node.value) is int:
            return ast.copy_location(ast.Constant(float(node.value)), node)
        return node
