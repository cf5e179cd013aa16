import math
import re

import numpy as np
import pytest

from processors.rules.expression_syntax import (
    CELL_CONSTANTS,
    SAMPLE_FIELDS,
    ExpressionError,
    parse_expression,
)
from processors.rules.expressions import compile_expression

KNOWN = {*SAMPLE_FIELDS, *CELL_CONSTANTS, "resistance_uohm"}
NAN = math.nan


def evaluate(text: str, **columns: list[float]) -> list[float]:
    """Values of an expression over the given columns, every row asked for."""
    n = len(next(iter(columns.values()))) if columns else 1
    arrays = {name: np.array(values, dtype=np.float64) for name, values in columns.items()}
    values, _ = compile_expression(text, KNOWN).evaluate(arrays, np.ones(n, dtype=bool))
    return values.tolist()


# Refused at check time, each with a message that says what is wrong.

HOSTILE = [
    ("attribute", "cell_voltage_v.__class__", "attribute access is not allowed: "),
    ("dunder-chain", "().__class__.__bases__[0]", "subscripts are not allowed"),
    ("import-call", "__import__('os').system('ls')", "attribute access is not allowed"),
    ("import-function", "__import__('os')", "unknown function '__import__'; the functions are"),
    ("import-statement", "import os", "a statement, not an expression"),
    ("assignment", "x = 1", "a statement, not an expression"),
    ("walrus", "(x := 1)", "assignment (:=) is not allowed"),
    ("unknown-function", "eval('1')", "unknown function 'eval'"),
    ("function-typo", "sqr(cell_voltage_v)", "unknown function 'sqr'; did you mean 'sqrt'?"),
    ("subscript", "cell_voltage_v[0]", "subscripts are not allowed: cell_voltage_v[0]"),
    ("lambda", "(lambda: 1)()", "lambda is not allowed"),
    ("comprehension", "[x for x in (1, 2)]", "comprehensions are not allowed"),
    ("generator", "max(1, (x for x in (1, 2)))", "comprehensions are not allowed"),
    ("string", "'abc'", "strings are not allowed"),
    ("f-string", "f'{cell_voltage_v}'", "strings are not allowed"),
    ("huge-exponent", "10 ** 10 ** 10", "the exponent must be a number from -100 to 100"),
    ("exponent-too-big", "cell_voltage_v ** 101", "got ** 101"),
    ("exponent-a-name", "2 ** cell_voltage_v", "got ** cell_voltage_v"),
    ("huge-literal", "1e400 * cell_voltage_v", "number too large"),
    ("complex", "1j", "1j is not a number"),
    ("boolean", "True", "True is not a number"),
    ("bit-shift", "1 << 100000", "operator << is not allowed"),
    ("xor-for-power", "cell_voltage_v ^ 2", "operator ^ (a power is **) is not allowed"),
    ("membership", "1 in cell_voltage_v", "operator in is not allowed"),
    ("conditional", "1 if cell_voltage_v else 2", "conditional expressions"),
    ("keyword", "round(cell_voltage_v, ndigits=2)", "keyword arguments are not allowed"),
    ("arity", "abs(cell_voltage_v, 2)", "abs() takes 1 argument, got 2"),
    ("min-one", "min(cell_voltage_v)", "min() takes 2 or more arguments, got 1"),
    ("round-digits", "round(cell_voltage_v, 1.5)", "digits must be a whole number"),
    ("unknown-name", "cell_votage_v * 2", "unknown name 'cell_votage_v'; did you mean"),
    ("function-as-name", "abs + 1", "'abs' is a function: call it"),
    ("syntax", "(cell_voltage_v - 1.65", "syntax error at column 1: '(' was never closed"),
    ("syntax-end", "cell_voltage_v +", "syntax error at the end: invalid syntax"),
    ("empty", "  ", "must not be empty"),
    ("too-long", "+".join(["cell_voltage_v"] * 40), "too long: 599 characters, at most 500"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_refused(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        compile_expression(text, KNOWN)


def test_parse_checks_structure_but_not_names() -> None:
    tree = parse_expression("later_field * 2")
    assert tree.body is not None
    with pytest.raises(ExpressionError, match="unknown name 'later_field'"):
        compile_expression("later_field * 2", KNOWN)


def test_multi_line_yaml_scalar_is_one_expression() -> None:
    text = "(cell_voltage_v - 1.65)\n  / line_current_ka\n  * 1000\n"
    assert evaluate(text, cell_voltage_v=[4.2], line_current_ka=[300.0]) == [pytest.approx(8.5)]


# Values, worked by hand.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(cell_voltage_v - 1.65) / line_current_ka * 1000", 8.5),  # (4.2-1.65)/300*1000
        ("cell_voltage_v ** 2", 17.64),
        ("16 ** 0.5 + abs(-1)", 5.0),
        ("sqrt(line_current_ka / 3)", 10.0),
        ("round(cell_voltage_v * 2980 / 0.925)", 13531.0),  # 12516 / 0.925 = 13530.8
        ("round(cell_voltage_v / 3, 2)", 1.4),
        ("max(cell_voltage_v, 5, 1)", 5.0),
        ("min(cell_voltage_v, 5, 1)", 1.0),
        ("log(exp(2))", 2.0),
        ("cell_voltage_v > 4", 1.0),
        ("cell_voltage_v == 4.2", 1.0),
        ("cell_voltage_v < 4", 0.0),
        ("cell_voltage_v > 4 and line_current_ka < 200", 0.0),  # row by row
        ("cell_voltage_v > 4 or line_current_ka < 200", 1.0),
        ("not cell_voltage_v > 4", 0.0),
        ("4 < cell_voltage_v < 4.5", 1.0),
        ("-cell_voltage_v + 10", 5.8),
    ],
)
def test_value(text: str, expected: float) -> None:
    assert evaluate(text, cell_voltage_v=[4.2], line_current_ka=[300.0]) == [
        pytest.approx(expected)
    ]


@pytest.mark.parametrize(
    ("text", "vectorised"),
    [
        ("(cell_voltage_v - 1.65) / line_current_ka * 1000", True),
        ("max(cell_voltage_v, 4) > 4.1", True),
        ("cell_voltage_v > 4 and line_current_ka > 1", False),
        ("not cell_voltage_v", False),
        ("3 < cell_voltage_v < 5", False),
    ],
)
def test_arithmetic_is_vectorised_and_logic_goes_row_by_row(text: str, vectorised: bool) -> None:
    assert compile_expression(text, KNOWN).vectorised is vectorised


@pytest.mark.parametrize(
    "text",
    [
        "(cell_voltage_v - 1.65) / line_current_ka * 1000",  # vectorised
        "cell_voltage_v > 0 and (cell_voltage_v - 1.65) / line_current_ka * 1000",  # per row
    ],
    ids=["vectorised", "per-row"],
)
def test_rows_without_an_input_are_missing_and_failures_are_not_finite(text: str) -> None:
    columns = {
        "cell_voltage_v": np.array([4.2, 4.2, 4.2, 4.2]),
        "line_current_ka": np.array([300.0, 0.0, NAN, 300.0]),
    }
    where = np.array([True, True, True, False])
    values, missing = compile_expression(text, KNOWN).evaluate(columns, where)
    assert values[0] == pytest.approx(8.5)
    assert not np.isfinite(values[1])  # a division by zero
    assert np.isnan(values[2])
    assert np.isnan(values[3])
    assert missing.tolist() == [False, False, True, False]


@pytest.mark.parametrize(
    "text",
    [
        "cell_voltage_v / 0",
        "cell_voltage_v * (1 / 0)",
        "log(cell_voltage_v - 5)",
        "sqrt(cell_voltage_v - 5)",
        "(cell_voltage_v - 5) ** 0.5",
        "exp(cell_voltage_v * 1000)",
        "10 ** 100 * 10 ** 100 * 10 ** 100 * 10 ** 100 * cell_voltage_v",
        "cell_voltage_v > 1 and cell_voltage_v / 0",
        "cell_voltage_v > 1 and log(0)",
    ],
)
def test_arithmetic_failure_is_a_value_that_is_not_finite(text: str) -> None:
    [value] = evaluate(text, cell_voltage_v=[4.2])
    assert not math.isfinite(value)


def test_integers_are_floats_so_powers_cannot_exhaust_memory() -> None:
    [value] = evaluate("((10 ** 100) ** 100) ** 100 + cell_voltage_v", cell_voltage_v=[1.0])
    assert value == math.inf


def test_names_in_order_of_use_without_functions() -> None:
    expression = compile_expression(
        "max(line_current_ka, 1) + cell_voltage_v * line_current_ka", KNOWN
    )
    assert expression.names == ("line_current_ka", "cell_voltage_v")
