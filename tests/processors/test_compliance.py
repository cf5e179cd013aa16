"""Every processor keeps the batch contract (processors.testing.check_compliance): drawn
telemetry around a shift change, with gaps, anode effects, bath temperatures, anode
changes and taps, fed whole and cut at a drawn row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import build
from collector.config.inputs import InputRule
from collector.config.models import Config
from collector.config.rules import AlarmRule, DerivedRule, Rules
from processors.base import Processor
from processors.kpi.anode_settle import AnodeSettleProcessor
from processors.kpi.energy import Goal
from processors.kpi.periods import Calendar
from processors.model import UNTIMED, Batch, Event, Point
from processors.rules.derived import DerivedProcessor
from processors.testing import (
    anode_change,
    at_rate,
    check_compliance,
    check_late_events,
    metal_tap,
    rows,
    samples,
    split,
)

NS = 1_000_000_000
# Asia/Shanghai (UTC+8): the 08:00 shift change of 2024-03-01 is 2024-03-01T00:00Z
SHIFT_CHANGE = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp()) * NS
T0 = SHIFT_CHANGE - 20 * 60 * NS
T1 = SHIFT_CHANGE + 30 * 60 * NS  # past the 15 min grace: the first shift closes
CALENDAR = Calendar("Asia/Shanghai", (time(0), time(8), time(16)))
CELLS = [("P1", "C1"), ("P1", "C2"), ("P2", "C1"), ("P9", "X1")]  # P9 is not configured
POTLINES = ("P1", "P2")
GOAL = Goal(0.925, 13450.0, 100.0, 0.38)
CONSTANTS = {
    p: {"current_efficiency": 0.925, "anodes_per_cell": 40.0, "anode_effect_threshold_v": 8.0}
    for p in POTLINES
}
ALARMS = [
    AlarmRule(name="bath_hot", field="bath_temp_c", above=975.0, hold_s=60.0),
    AlarmRule(name="voltage", field="cell_voltage_v", outside=[3.9, "anode_effect_threshold_v"]),
    AlarmRule(name="silent", severity="critical", stale_s=120.0),
]
DERIVED = [
    DerivedRule(name="resistance_uohm", expr="(cell_voltage_v - 1.65) / line_current_ka * 1000"),
    DerivedRule(name="superheat_c", expr="bath_temp_c - 955", potlines=["P1"]),
]

CONFIG = Config(
    source=Path("cellmon.yaml"),
    plant={
        "timezone": "Asia/Shanghai",
        "potlines": [{"id": p, "baseline_sec_kwh_per_t": 13450} for p in POTLINES],
    },
    # a settle time inside the drawn span, so followed changes are decided in the test
    targets={"anode_settle_max_min": 10, "clock_drift_limit_s": 45},
    rules=Rules(
        inputs=[
            InputRule(
                name="telemetry", topic="smelter/{potline}/{cell}/telemetry", kind="telemetry"
            )
        ],
        derived=DERIVED,
        alarms=ALARMS,
    ),
)
"""A plant's config, from which every registered processor is built as ``cellmon run`` does."""


Window = tuple[int, int, int]  # cell, first sample index, samples


def windows(max_count: int, max_len: int) -> st.SearchStrategy[list[Window]]:
    cell = st.integers(0, len(CELLS) - 1)
    return st.lists(
        st.tuples(cell, st.integers(0, 400), st.integers(1, max_len)), max_size=max_count
    )


def inside(found: list[Window], c: int, k: int) -> bool:
    return any(cell == c and first <= k < first + n for cell, first, n in found)


def arrivals(draw: st.DrawFn, cell_id: np.ndarray, ts: np.ndarray, n_cells: int) -> np.ndarray:
    """When each sample arrived: its cell's clock offset and a jitter, every few untimed."""
    offsets = draw(st.lists(st.integers(-60_000, 120_000), min_size=n_cells, max_size=n_cells))
    jitter = draw(st.integers(0, 5_000))
    untimed_every = draw(st.integers(2, 20))
    k = np.arange(len(ts))
    lag_ms = np.asarray(offsets, dtype=np.int64)[cell_id] + (k * 7919) % (jitter + 1)
    return np.where(k % untimed_every == 0, UNTIMED, ts + lag_ms * 1_000_000)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """A stretch of telemetry across the shift change, and events in it."""
    n_cells = draw(st.integers(1, len(CELLS)))
    cells = CELLS[:n_cells]
    step_s = draw(st.sampled_from([10, 15, 30]))
    times = at_rate(T0, T1, step_s)
    index = {t: k for k, t in enumerate(times)}
    gaps, effects = draw(windows(2, 30)), draw(windows(2, 20))
    bath_every = draw(st.integers(3, 12))
    bath = draw(st.floats(940.0, 990.0))
    sb = samples(
        cells,
        times,
        voltage=lambda c, t: 35.0 if inside(effects, c, index[t]) else 4.2 + 0.01 * c,
        current=lambda c, t: 300.0 + (index[t] % 7),
        extra=lambda c, t: {"bath_temp_c": bath + c} if index[t] % bath_every == 0 else None,
        sent=lambda c, t: not inside(gaps, c, index[t]),
    )
    sb.arrival_ns = arrivals(draw, sb.cell_id, sb.ts_ns, len(cells))
    at = st.integers(T0, T1)
    events: list[Event] = [
        anode_change(cells[c], ts, anode, block, butt)
        for c, ts, anode, block, butt in draw(
            st.lists(
                st.tuples(
                    st.integers(0, n_cells - 1),
                    at,
                    st.integers(1, 3),
                    st.sampled_from(["590", "560"]),
                    st.none() | st.floats(100.0, 200.0),
                ),
                max_size=4,
            )
        )
    ]
    events += [
        metal_tap(cells[c], ts, kg)
        for c, ts, kg in draw(
            st.lists(
                st.tuples(st.integers(0, n_cells - 1), at, st.floats(100.0, 3000.0)), max_size=2
            )
        )
    ]
    events.sort(key=lambda e: e.ts_ns)
    return Batch(sb, events)


@st.composite
def cut_batches(draw: st.DrawFn) -> tuple[Batch, int]:
    batch = draw(batches())
    return batch, draw(st.integers(0, rows(batch)))


DERIVED_POINT_PER_BATCH = pytest.mark.xfail(
    strict=True,
    reason="DerivedProcessor writes its running failure totals once per batch, stamped "
    "with the potline's newest sample of that batch, so a cut adds a point at the cut "
    "(same totals in the end: see test_derived_totals_do_not_depend_on_the_cut)",
)


def cases() -> list[object]:
    """Every processor of the registry, built from CONFIG."""
    out = []
    for entry in build.PROCESSORS:
        name = type(entry.build(CONFIG)).__name__
        marks = DERIVED_POINT_PER_BATCH if name == "DerivedProcessor" else ()
        out.append(pytest.param(entry.build, marks=marks, id=name))
    return out


def test_every_registered_processor_is_checked() -> None:
    names = {type(entry.build(CONFIG)).__name__ for entry in build.PROCESSORS}
    assert names == {
        "DerivedProcessor",
        "AlarmProcessor",
        "EventPoints",
        "SecProcessor",
        "AnodeCycleProcessor",
        "AnodeSettleProcessor",
        "AnodeEffectProcessor",
        "MinuteProcessor",
        "TapCycleProcessor",
        "ClockProcessor",
    }


@pytest.mark.parametrize("factory", cases())
@given(case=cut_batches())
def test_processor_keeps_the_batch_contract(
    factory: Callable[[Config], Processor], case: tuple[Batch, int]
) -> None:
    batch, at = case
    check_compliance(factory(CONFIG), batch, at)


@given(case=cut_batches())
def test_the_settling_does_not_depend_on_when_the_changes_arrive(case: tuple[Batch, int]) -> None:
    batch, at = case
    check_late_events(AnodeSettleProcessor(build.settle_settings(CONFIG)), batch, at)


@given(case=cut_batches())
def test_derived_totals_do_not_depend_on_the_cut(case: tuple[Batch, int]) -> None:
    batch, at = case
    proc = DerivedProcessor(DERIVED, CONSTANTS)
    whole_state, whole = proc.apply(batch, None)
    first, second = split(batch, at)
    state, cut = proc.apply(first, None)
    state, rest = proc.apply(second, state)
    assert state == whole_state
    assert last_per_series([*cut, *rest]) == last_per_series(whole)


def last_per_series(points: list[Point]) -> dict[tuple, dict]:
    """The running totals each series ends with (their time is where the batch ended)."""
    return {(p.measurement, p.tags): p.fields for p in points}
