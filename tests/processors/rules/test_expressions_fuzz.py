"""Fuzzing the expression compiler: arbitrary text and generated expressions.

Whatever an engineer writes, ``compile_expression`` either returns an ``Expression`` or
raises ``ExpressionError`` with a message; nothing else escapes (no ``RecursionError``,
``SyntaxError``, ``OverflowError``). A compiled expression, evaluated on any finite inputs
(NaN standing for an absent one), never raises: a failed arithmetic (division by zero,
overflow, the log of a negative number) gives a non-finite value, as ``evaluate``
documents. The ``ci`` hypothesis profile (tests/conftest.py) fixes the seed;
``HYPOTHESIS_PROFILE=long`` searches longer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from processors.rules.expression_syntax import (
    CELL_CONSTANTS,
    FUNCTIONS,
    MAX_NESTING,
    SAMPLE_FIELDS,
    ExpressionError,
)
from processors.rules.expressions import Expression, compile_expression

KNOWN = frozenset({*SAMPLE_FIELDS, *CELL_CONSTANTS, "resistance_uohm"})
NAMES = sorted(KNOWN)

# The tokens of expressions, good and bad, so arbitrary text often gets past the parser.
TOKENS = [
    *NAMES,
    *FUNCTIONS,
    "volts", "__import__", "sqr", "eval", "x",
    "0", "1", "2.5", "1e300", "1e999", "10" * 40, "0x1F", "1_000", "-0.0", "True", "None",
    "'a'", '"b"', "+", "-", "*", "/", "**", "//", "%", "@", "&", "|", "^", "~", "<<", ">>",
    "<", "<=", ">", ">=", "==", "!=", "and", "or", "not", "in", "is", "if", "else", "lambda",
    "(", ")", "[", "]", "{", "}", ",", ":", ":=", ".", ".real", "=", ";", "\n", "\t", " ",
]  # fmt: skip
token_text = st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join)
any_text = st.text(st.characters(codec=None), max_size=80)

literals = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(10**320), max_value=10**320).map(str),
    st.sampled_from(["0", "0.0", "1", "2", "0.5", "100", "101", "1e300", "1e301", "1e-320"]),
)
names = st.sampled_from([*NAMES, "volts", "x"])
known_names = st.sampled_from(NAMES)
small_literals = st.one_of(
    st.floats(min_value=-1e300, max_value=1e300).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["0", "0.0", "1", "2", "0.5", "1e300", "1e-320"]),
)
BINARY = ["+", "-", "*", "/", "**", "//", "%", "@", "&", "|", "^", "<<", ">>"]
COMPARE = ["<", "<=", ">", ">=", "==", "!=", "in", "is"]


def _binary(t: tuple[str, str, str]) -> str:
    return f"({t[0]} {t[1]} {t[2]})"


def _chain(t: tuple[str, list[tuple[str, str]]]) -> str:
    return "(" + t[0] + "".join(f" {op} {b}" for op, b in t[1]) + ")"


def _expressions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    args = st.lists(inner, max_size=3).map(", ".join)
    functions = st.sampled_from([*FUNCTIONS, "sqr", "eval", "volts"])
    comparisons = st.lists(st.tuples(st.sampled_from(COMPARE), inner), min_size=1, max_size=3)
    return st.one_of(
        st.tuples(inner, st.sampled_from(BINARY), inner).map(_binary),
        st.tuples(inner, st.just("**"), literals).map(_binary),
        st.tuples(st.sampled_from(["-", "+", "not ", "~"]), inner).map("({0[0]}{0[1]})".format),
        st.tuples(inner, comparisons).map(_chain),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(_binary),
        st.tuples(functions, args).map("{0[0]}({0[1]})".format),
        st.tuples(inner, literals).map("round({0[0]}, {0[1]})".format),
        st.tuples(inner, inner, inner).map("({0[0]} if {0[1]} else {0[2]})".format),
        inner.map("{}.real".format),
        inner.map("{}[0]".format),
        inner.map("(lambda: {})()".format),
        inner.map("'{}'".format),
    )


expressions = st.recursive(st.one_of(names, literals), _expressions, max_leaves=12)
# Mostly the whitelist, so that many of them compile and get evaluated.
arithmetic = st.recursive(
    st.one_of(known_names, small_literals),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "<", ">=", "=="]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(inner, st.sampled_from(["-2", "0.5", "2", "3", "100", "-100"])).map(
            lambda t: f"({t[0]} ** {t[1]})"
        ),
        st.tuples(st.sampled_from(["-", "not "]), inner).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.sampled_from(["abs", "exp", "log", "sqrt", "round"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(inner, min_size=2, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
    ),
    max_leaves=10,
)
# Exact in IEEE arithmetic in Python and in numpy alike: the two evaluations must agree.
exact = st.recursive(
    st.one_of(known_names, small_literals),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "<", ">=", "=="]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda a: f"(-{a})"),
        inner.map(lambda a: f"abs({a})"),
        st.tuples(st.sampled_from(["min", "max"]), inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
    ),
    max_leaves=10,
)

deep = st.tuples(
    st.sampled_from(["-", "+", "not ", "abs(", "(-"]),
    st.sampled_from([MAX_NESTING - 2, MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 300, 480]),
).map(lambda t: t[0] * t[1] + "cell_voltage_v" + (")" * t[1] if "(" in t[0] else ""))

finite = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324, 4.2, 300.0]),
)


def compiled(text: str) -> Expression | None:
    """The expression, or None when refused with a message; anything else fails the test."""
    try:
        expr = compile_expression(text, KNOWN)
    except ExpressionError as err:
        refusal = str(err)
    else:
        event("compiled")
        return expr
    event("refused: " + refusal.split(":")[0][:30])
    assert refusal.strip(), f"an empty message for {text!r}"
    return None


Evaluation = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]


def check_evaluation(expr: Expression, data: st.DataObject) -> Evaluation:
    """Evaluate on drawn inputs; the values and missing flags must be as documented.

    Returns the values, the rows that were computed, and the inputs.
    """
    n = data.draw(st.integers(min_value=1, max_value=6), label="rows")
    cells = st.one_of(finite, st.just(np.nan))  # NaN: the row has no such value
    columns = {
        name: np.array(data.draw(st.lists(cells, min_size=n, max_size=n), label=name))
        for name in expr.names
    }
    where = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="where"))
    values, missing = expr.evaluate(columns, where)  # must not raise
    assert values.shape == missing.shape == (n,)
    assert values.dtype == np.float64
    absent = np.zeros(n, dtype=bool)
    for name in expr.names:
        absent |= np.isnan(columns[name])
    assert (missing == (absent & where)).all()
    assert np.isnan(values[~where]).all()
    assert np.isnan(values[missing]).all()
    return values, where & ~missing, columns


@given(st.one_of(any_text, token_text))
def test_fuzz_arbitrary_text_compiles_or_is_refused(text: str) -> None:
    compiled(text)


@given(st.one_of(expressions, deep), st.data())
def test_fuzz_generated_expressions(text: str, data: st.DataObject) -> None:
    expr = compiled(text)
    if expr is not None:
        check_evaluation(expr, data)


@given(arithmetic, st.data())
def test_fuzz_evaluation_on_finite_inputs_never_raises(text: str, data: st.DataObject) -> None:
    expr = compiled(text)
    assert expr is not None, text  # the grammar is within the whitelist
    check_evaluation(expr, data)


@given(exact, st.data())
def test_fuzz_vectorised_and_row_by_row_agree(text: str, data: st.DataObject) -> None:
    """Where both evaluations give a number, it is the same number.

    They may differ in what is not finite: numpy gives ``inf`` for a division by zero
    where Python raises (NaN), and ``max`` of a NaN depends on the argument order.
    """
    expr = compiled(text)
    assert expr is not None, text
    values, rows, columns = check_evaluation(expr, data)
    other = dataclasses.replace(expr, vectorised=not expr.vectorised)
    again, _ = other.evaluate(columns, rows)
    both = rows & np.isfinite(values) & np.isfinite(again)
    assert (values[both] == again[both]).all(), (values, again)


@pytest.mark.parametrize(
    "text",
    [
        "-" * 480 + "x",  # found by the fuzzing: RecursionError out of compile_expression
        "+" * 480 + "x",
        "-+" * 120 + "x",
        "1" + "+1" * 249,
    ],
)
def test_nesting_beyond_the_limit_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(ExpressionError, match="nested too deeply: at most 200 levels"):
        compile_expression(text, KNOWN | {"x"})


def test_the_deepest_nesting_allowed_compiles_and_evaluates() -> None:
    for text in ("-" * (MAX_NESTING - 1) + "cell_voltage_v", "1" + "+1" * (MAX_NESTING - 1)):
        expr = compile_expression(text, KNOWN)
        values, _ = expr.evaluate({"cell_voltage_v": np.array([4.0])}, np.ones(1, dtype=bool))
        expected = 4.0 * (-1) ** (MAX_NESTING - 1) if text[0] == "-" else float(MAX_NESTING)
        assert values.tolist() == [expected]


@pytest.mark.parametrize(
    ("text", "refusal"),
    [  # found by the fuzzing: OverflowError out of compile_expression
        ("anode_cycle_days ** " + "1" * 400, "the exponent must be a number from -100 to 100"),
        ("cell_voltage_v ** -" + "9" * 309, "the exponent must be a number from -100 to 100"),
        ("round(cell_voltage_v, " + "1" * 400 + ")", "digits must be a whole number"),
    ],
)
def test_an_integer_no_float_holds_is_refused_with_a_message(text: str, refusal: str) -> None:
    with pytest.raises(ExpressionError, match=refusal):
        compile_expression(text, KNOWN)


@pytest.mark.parametrize(
    "text",
    [  # found by the fuzzing (long profile): TypeError out of evaluate, row by row
        "anode_cycle_days and exp(anode_cycle_days ** 0.5)",
        "not sqrt(anode_cycle_days ** 0.5)",
        "anode_cycle_days ** 0.5 < 1 < 2",
        "max(anode_cycle_days ** 0.5, 1) or 0",
        "round(anode_cycle_days ** 0.5) and 1",
    ],
)
def test_a_complex_power_is_a_failed_arithmetic_row_by_row(text: str) -> None:
    expr = compile_expression(text, KNOWN)
    assert not expr.vectorised
    values, missing = expr.evaluate(
        {"anode_cycle_days": np.array([-1.0, 4.0])}, np.ones(2, dtype=bool)
    )
    assert np.isnan(values[0])
    assert np.isfinite(values[1])
    assert not missing.any()
