"""What a rule's expression may say: parsed and checked once, before anything evaluates it.

Process engineers write expressions in YAML, so an expression is untrusted text. It is
parsed once, when the rules are loaded, and checked against a short whitelist (names,
numbers, + - * / **, comparisons, and/or/not, seven functions) that is stricter than
simpleeval's own limits: attributes, subscripts, strings, lambdas, comprehensions and
calls of anything else are the ways into Python's internals, so they are refused at
check time with a message an engineer can act on. The config check and ``check --sample``
use this part alone: they read an expression's names before all the names a rule may use
are known, and evaluate nothing.

An exponent must be a literal from -100 to 100, so ``10 ** 10 ** 10`` is refused rather
than attempted.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from collections.abc import Callable, Collection
from typing import Any

__all__ = [
    "ARITY",
    "CELL_CONSTANTS",
    "FUNCTIONS",
    "MAX_NESTING",
    "OPERATORS",
    "SAMPLE_FIELDS",
    "ExpressionError",
    "names_read",
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
    "tap_cycle_max_h",
    "anode_settle_band_mv",
    "anode_settle_max_min",
)
"""The numeric settings of a cell's potline, after the potline's target overrides."""

MAX_LENGTH = 500
MAX_NESTING = 200
"""Operators and calls nested deeper are refused: compiling and evaluating recurse per level."""
MAX_EXPONENT = 100.0
MAX_LITERAL = 1e300

# The operators the whitelist lets through, and what each does: the evaluators use this
# table, so no operator can be checked one way and evaluated another.
OPERATORS: dict[type, Callable[..., Any]] = {
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
ARITY = {
    "abs": (1, 1),
    "exp": (1, 1),
    "log": (1, 1),
    "max": (2, 64),
    "min": (2, 64),
    "round": (1, 2),
    "sqrt": (1, 1),
}
"""The functions an expression may call, with their least and most arguments."""
FUNCTIONS = tuple(sorted(ARITY))

_STRUCTURE = (ast.Expression, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp)
_ALLOWED = (*_STRUCTURE, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.Call, *OPERATORS)

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
    return [name for name in names_read(tree) if name not in known]


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
    low, high = ARITY[name]
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


def names_read(tree: ast.AST) -> list[str]:
    """The names read, in order of appearance, each once; called functions are not names."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.id for n in nodes))
