import copy
import json
import math
from typing import Any

import numpy as np
import pytest

from collector.config.rules import DerivedRule
from processors.model import Batch, Point, SampleBatch
from processors.rules.derived import DerivedProcessor
from processors.rules.expression_syntax import ExpressionError

S = 1_000_000_000
T0 = 1_700_000_000 * S
RESISTANCE = DerivedRule(
    name="resistance_uohm", expr="(cell_voltage_v - 1.65) / line_current_ka * 1000"
)
CONSTANTS = {
    "P1": {"current_efficiency": 0.925, "anodes_per_cell": 40.0},
    "P2": {"current_efficiency": 0.9, "anodes_per_cell": 24.0},
}

Row = tuple[str, float, float, dict[str, float] | None]
"""(cell as "potline/cell", voltage, current, extra); one second apart."""


def batch_of(*rows: Row) -> SampleBatch:
    cells: list[tuple[str, str]] = []
    for key, *_ in rows:
        potline, cell = key.split("/")
        if (potline, cell) not in cells:
            cells.append((potline, cell))
    return SampleBatch(
        cells=cells,
        cell_id=np.array([cells.index(tuple(r[0].split("/"))) for r in rows], dtype=np.int64),
        ts_ns=np.array([T0 + i * S for i in range(len(rows))], dtype=np.int64),
        voltage_v=np.array([r[1] for r in rows], dtype=np.float64),
        current_ka=np.array([r[2] for r in rows], dtype=np.float64),
        extra=[r[3] for r in rows],
    )


def rule(name: str, expr: str, **more: Any) -> DerivedRule:
    return DerivedRule(name=name, expr=expr, **more)


def test_pseudo_resistance_by_hand() -> None:
    # (4.2 - 1.65) / 300 * 1000 = 8.5 µΩ; (4.05 - 1.65) / 320 * 1000 = 7.5 µΩ
    samples = batch_of(("P1/A01", 4.2, 300.0, None), ("P1/A02", 4.05, 320.0, {"bath_temp_c": 960}))
    derivation = DerivedProcessor([RESISTANCE], CONSTANTS).derivation(samples)
    assert derivation.extra == [
        {"resistance_uohm": pytest.approx(8.5)},
        {"bath_temp_c": 960, "resistance_uohm": pytest.approx(7.5)},
    ]
    assert derivation.failures == {}


def test_the_batch_is_not_modified() -> None:
    samples = batch_of(("P1/A01", 4.2, 300.0, {"bath_temp_c": 960.0}))
    DerivedProcessor([RESISTANCE], CONSTANTS).derivation(samples)
    assert samples.extra == [{"bath_temp_c": 960.0}]


def test_division_by_zero_leaves_the_value_absent_and_is_counted() -> None:
    samples = batch_of(("P1/A01", 4.2, 0.0, None), ("P1/A02", 4.2, 300.0, None))
    derivation = DerivedProcessor([RESISTANCE], CONSTANTS).derivation(samples)
    assert derivation.extra == [None, {"resistance_uohm": pytest.approx(8.5)}]
    assert derivation.failures == {("resistance_uohm", "P1", "math_error"): 1}


def test_missing_optional_field_leaves_the_value_absent_and_is_counted() -> None:
    # 965 - 950 = 15 K of superheat above an assumed liquidus of 950 °C
    superheat = rule("superheat_k", "bath_temp_c - 950")
    samples = batch_of(
        ("P1/A01", 4.2, 300.0, {"bath_temp_c": 965.0}),
        ("P1/A02", 4.2, 300.0, {"noise_uohm": 12.0}),
        ("P2/B01", 4.2, 300.0, None),
    )
    derivation = DerivedProcessor([superheat], CONSTANTS).derivation(samples)
    assert derivation.extra == [
        {"bath_temp_c": 965.0, "superheat_k": 15.0},
        {"noise_uohm": 12.0},
        None,
    ]
    assert derivation.failures == {
        ("superheat_k", "P1", "missing_field"): 1,
        ("superheat_k", "P2", "missing_field"): 1,
    }


def test_potline_settings_by_potline() -> None:
    # 4.2 V at CE 0.925: 2980 × 4.2 / 0.925 = 13530.8 kWh/t; at CE 0.9: 13906.7 kWh/t
    sec = rule("sec_kwh_per_t", "2980 * cell_voltage_v / current_efficiency")
    per_anode = rule("ka_per_anode", "line_current_ka / anodes_per_cell")  # 300/40, 300/24
    samples = batch_of(
        ("P1/A01", 4.2, 300.0, None), ("P2/B01", 4.2, 300.0, None), ("P9/Z01", 4.2, 300.0, None)
    )
    derivation = DerivedProcessor([sec, per_anode], CONSTANTS).derivation(samples)
    assert derivation.extra == [
        {"sec_kwh_per_t": pytest.approx(13530.81, abs=0.01), "ka_per_anode": 7.5},
        {"sec_kwh_per_t": pytest.approx(13906.67, abs=0.01), "ka_per_anode": 12.5},
        None,  # P9 is not configured: no settings
    ]
    assert derivation.failures == {
        ("sec_kwh_per_t", "P9", "missing_field"): 1,
        ("ka_per_anode", "P9", "missing_field"): 1,
    }


def test_later_rules_read_earlier_derived_fields() -> None:
    # 8.5 µΩ and 9.5 µΩ ((4.5 - 1.65) / 300 * 1000); flag above 9 µΩ
    high = rule("high_resistance", "resistance_uohm > 9")
    samples = batch_of(("P1/A01", 4.2, 300.0, None), ("P1/A02", 4.5, 300.0, None))
    derivation = DerivedProcessor([RESISTANCE, high], CONSTANTS).derivation(samples)
    assert derivation.extra == [
        {"resistance_uohm": pytest.approx(8.5), "high_resistance": 0.0},
        {"resistance_uohm": pytest.approx(9.5), "high_resistance": 1.0},
    ]


def test_an_absent_earlier_field_makes_the_later_one_missing() -> None:
    high = rule("high_resistance", "resistance_uohm > 9")
    derivation = DerivedProcessor([RESISTANCE, high], CONSTANTS).derivation(
        batch_of(("P1/A01", 4.2, 0.0, None))
    )
    assert derivation.extra == [None]
    assert derivation.failures == {
        ("resistance_uohm", "P1", "math_error"): 1,
        ("high_resistance", "P1", "missing_field"): 1,
    }


def test_row_by_row_expressions_give_the_same_values() -> None:
    # `and` needs Python truth values: evaluated per row, same result as the arithmetic
    guarded = rule(
        "resistance_uohm",
        "line_current_ka > 0 and (cell_voltage_v - 1.65) / line_current_ka * 1000",
    )
    samples = batch_of(("P1/A01", 4.2, 300.0, None), ("P1/A02", 4.05, 320.0, None))
    derivation = DerivedProcessor([guarded], CONSTANTS).derivation(samples)
    assert derivation.extra == [
        {"resistance_uohm": pytest.approx(8.5)},
        {"resistance_uohm": pytest.approx(7.5)},
    ]


def test_potline_scope() -> None:
    scoped = rule("resistance_uohm", RESISTANCE.expr, potlines=["P2"])
    samples = batch_of(("P1/A01", 4.2, 0.0, None), ("P2/B01", 4.2, 300.0, None))
    derivation = DerivedProcessor([scoped], CONSTANTS).derivation(samples)
    assert derivation.extra == [None, {"resistance_uohm": pytest.approx(8.5)}]
    assert derivation.failures == {}  # P1's division by zero is outside the rule


def test_pass_through_fields_listed_under_fields() -> None:
    # 120 kg of alumina over 300 kA: 0.4 kg/kA
    feed = rule("feed_kg_per_ka", "alumina_feed_kg / line_current_ka", fields=["alumina_feed_kg"])
    samples = batch_of(("P1/A01", 4.2, 300.0, {"alumina_feed_kg": 120.0}))
    [extra] = DerivedProcessor([feed], CONSTANTS).derivation(samples).extra
    assert extra == {"alumina_feed_kg": 120.0, "feed_kg_per_ka": pytest.approx(0.4)}


def test_no_rules_and_no_samples() -> None:
    samples = batch_of(("P1/A01", 4.2, 300.0, {"bath_temp_c": 960.0}))
    assert DerivedProcessor([], CONSTANTS).derivation(samples).extra == [{"bath_temp_c": 960.0}]
    empty = DerivedProcessor([RESISTANCE], CONSTANTS).derivation(batch_of())
    assert (empty.extra, empty.failures) == ([], {})


def test_an_expression_the_check_refuses_is_refused_here_too() -> None:
    bad = DerivedRule.model_construct(name="x", expr="x.__class__", potlines=None, fields=[])
    with pytest.raises(ExpressionError, match="attribute access is not allowed"):
        DerivedProcessor([bad], CONSTANTS)


# apply: the counts, as state and as `rules` points.


def test_apply_counts_failures_and_writes_the_totals_that_changed() -> None:
    proc = DerivedProcessor([RESISTANCE], CONSTANTS)
    first = batch_of(("P1/A01", 4.2, 0.0, None), ("P1/A02", 4.2, 0.0, None))
    state, points = proc.apply(Batch(first, []), None)
    assert state == {"failures": {"resistance_uohm": {"P1": {"math_error": 2}}}}
    assert points == [
        Point(
            "rules",
            (("potline", "P1"), ("rule", "resistance_uohm")),
            {"missing_field": 0, "math_error": 2},
            T0 + 1 * S,  # the potline's newest sample in the batch
        )
    ]
    before = copy.deepcopy(state)
    second = batch_of(("P1/A01", 4.2, 0.0, None), ("P2/B01", 4.2, 0.0, None))
    state2, points2 = proc.apply(Batch(second, []), json.loads(json.dumps(state)))
    assert state == before  # not mutated
    assert state2 == {
        "failures": {"resistance_uohm": {"P1": {"math_error": 3}, "P2": {"math_error": 1}}}
    }
    assert [(p.tags, p.fields) for p in points2] == [
        ((("potline", "P1"), ("rule", "resistance_uohm")), {"missing_field": 0, "math_error": 3}),
        ((("potline", "P2"), ("rule", "resistance_uohm")), {"missing_field": 0, "math_error": 1}),
    ]


def test_apply_without_failures_writes_nothing() -> None:
    proc = DerivedProcessor([RESISTANCE], CONSTANTS)
    assert proc.apply(Batch(batch_of(("P1/A01", 4.2, 300.0, None)), []), None) == (None, [])


def test_values_are_floats() -> None:
    flag = rule("running", "line_current_ka > 100")
    [extra] = (
        DerivedProcessor([flag], CONSTANTS).derivation(batch_of(("P1/A01", 4.2, 300.0, None))).extra
    )
    assert extra is not None
    assert type(extra["running"]) is float
    assert not math.isnan(extra["running"])
