"""Hand-worked integration of energy and charge over periods (contract section 2): every
expected value is arithmetic written out here, not computed by the code under test.

The module's rule: trapezoids of U·I and of I between consecutive samples of a cell no
further apart than the gap limit; an interval across a period boundary is split there, U·I
and I interpolated linearly.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import NamedTuple

import numpy as np
import pytest

from processors.kpi.integrate import LastSample, integrate
from processors.kpi.ledger import CellKey
from processors.kpi.periods import Calendar
from processors.model import SampleBatch

NS = 1_000_000_000
H = 3600 * NS
DAY0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp()) * NS  # a UTC midnight
CAL = Calendar("UTC", (time(0), time(8), time(16)))
GAP = 60 * NS


def batch(cells: list[str], series: list[tuple[int, int, float, float]]) -> SampleBatch:
    """cells: "potline/cell"; series: (cell index, ts_ns, voltage, current)."""
    return SampleBatch(
        [(c.split("/")[0], c.split("/")[1]) for c in cells],
        np.array([s[0] for s in series], dtype=np.int64),
        np.array([s[1] for s in series], dtype=np.int64),
        np.array([s[2] for s in series], dtype=np.float64),
        np.array([s[3] for s in series], dtype=np.float64),
        [None] * len(series),
    )


class Contribution(NamedTuple):
    """One cell's row of a ``PeriodSums``, with its period."""

    cell: CellKey
    kind: str
    start_ns: int
    end_ns: int
    energy_kwh: float
    charge_kah: float
    covered_s: float
    ae_energy_kwh: float


def run(series, cells=("P1/C1",), last=None, kinds=("shift",), gap=GAP, **kw):
    last = {} if last is None else last
    return [
        Contribution(CellKey(s.potline, cell), s.kind, s.start_ns, s.end_ns, *row)
        for s in integrate(batch(list(cells), series), last, CAL, kinds, gap, **kw)
        for cell, *row in zip(
            s.cells, s.energy_kwh, s.charge_kah, s.covered_s, s.ae_energy_kwh, strict=True
        )
    ]


def only(out: list[Contribution]) -> Contribution:
    assert len(out) == 1, out
    return out[0]


def test_constant_cell_over_ten_seconds() -> None:
    # 4 V × 300 kA = 1200 kW for 10 s: 1200 × 10 / 3600 = 3.3333 kWh; 300 × 10/3600 kA·h
    c = only(run([(0, DAY0, 4.0, 300.0), (0, DAY0 + 10 * NS, 4.0, 300.0)]))
    assert c.cell == CellKey("P1", "C1")
    assert c.kind == "shift"
    assert (c.start_ns, c.end_ns) == (DAY0, DAY0 + 8 * H)
    assert c.energy_kwh == pytest.approx(12000 / 3600, rel=1e-12)
    assert c.charge_kah == pytest.approx(3000 / 3600, rel=1e-12)
    assert c.covered_s == pytest.approx(10.0)


def test_changing_values_are_integrated_by_trapezoid() -> None:
    # 4.0 V / 300 kA → 4.2 V / 310 kA over 10 s: U·I goes 1200 → 1302 kW
    # energy (1200 + 1302) / 2 × 10 / 3600 = 1251 / 360 = 3.475 kWh
    # (a left rectangle would give 1200 / 360 = 3.333)
    # charge (300 + 310) / 2 × 10 / 3600 = 305 / 360 = 0.84722 kA·h
    c = only(run([(0, DAY0, 4.0, 300.0), (0, DAY0 + 10 * NS, 4.2, 310.0)]))
    assert c.energy_kwh == pytest.approx(3.475, rel=1e-12)
    assert c.charge_kah == pytest.approx(305 / 360, rel=1e-12)


def test_a_gap_of_exactly_max_gap_is_integrated() -> None:
    # "no further apart than max_gap_s": 60 s apart at 60 s max → 1200 × 60 / 3600 = 20 kWh
    c = only(run([(0, DAY0, 4.0, 300.0), (0, DAY0 + 60 * NS, 4.0, 300.0)]))
    assert c.covered_s == pytest.approx(60.0)
    assert c.energy_kwh == pytest.approx(20.0, rel=1e-12)


def test_a_gap_over_max_gap_is_not_integrated() -> None:
    assert run([(0, DAY0, 4.0, 300.0), (0, DAY0 + 61 * NS, 4.0, 300.0)]) == []


def test_a_gap_leaves_out_only_its_own_interval() -> None:
    # samples at 0, 10, 20 s, then 100, 110 s: the 80 s gap is skipped, 30 s are covered
    # energy 1200 × 30 / 3600 = 10 kWh, charge 300 × 30 / 3600 = 2.5 kA·h
    ts = [0, 10, 20, 100, 110]
    c = only(run([(0, DAY0 + s * NS, 4.0, 300.0) for s in ts]))
    assert c.covered_s == pytest.approx(30.0)
    assert c.energy_kwh == pytest.approx(10.0, rel=1e-12)
    assert c.charge_kah == pytest.approx(2.5, rel=1e-12)


def test_a_lone_sample_integrates_nothing_but_is_remembered() -> None:
    last = {}
    assert run([(0, DAY0, 4.1, 305.0)], last=last) == []
    assert last == {CellKey("P1", "C1"): LastSample(DAY0, 4.1, 305.0)}


def test_the_last_sample_of_the_previous_batch_opens_the_first_interval() -> None:
    # last: 4 V / 300 kA at 00:00:00; the batch: 4 V / 300 kA at 00:00:10 → 3.3333 kWh
    last = {CellKey("P1", "C1"): LastSample(DAY0, 4.0, 300.0)}
    c = only(run([(0, DAY0 + 10 * NS, 4.0, 300.0)], last=last))
    assert c.energy_kwh == pytest.approx(12000 / 3600, rel=1e-12)
    assert last == {CellKey("P1", "C1"): LastSample(DAY0 + 10 * NS, 4.0, 300.0)}


def test_a_stale_last_sample_opens_nothing() -> None:
    # last at 00:00:00, the batch at 00:02:00: 120 s > 60 s
    last = {CellKey("P1", "C1"): LastSample(DAY0, 4.0, 300.0)}
    assert run([(0, DAY0 + 120 * NS, 4.0, 300.0)], last=last) == []


def test_a_repeated_timestamp_adds_no_time() -> None:
    # 0 s, 10 s, 10 s again: only the first 10 s interval counts
    series = [(0, DAY0, 4.0, 300.0), (0, DAY0 + 10 * NS, 4.0, 300.0)]
    c = only(run([*series, (0, DAY0 + 10 * NS, 4.0, 300.0)]))
    assert c.covered_s == pytest.approx(10.0)
    assert c.energy_kwh == pytest.approx(12000 / 3600, rel=1e-12)


def test_an_interval_across_a_boundary_is_split_with_interpolated_values() -> None:
    # 07:59:50 at 4 V / 300 kA (1200 kW), 08:00:30 at 4 V / 340 kA (1360 kW): 40 s.
    # At 08:00, 10/40 = 0.25 of the way: U·I = 1200 + 0.25 × 160 = 1240, I = 310.
    # shift 1: energy (1200 + 1240) / 2 × 10 / 3600 = 1220 / 360, charge 305 / 360
    # shift 2: energy (1240 + 1360) / 2 × 30 / 3600 = 1300 / 120, charge 325 / 120
    # together 14.2222 kWh = 1280 × 40 / 3600, the whole interval's trapezoid
    b = DAY0 + 8 * H
    out = run([(0, b - 10 * NS, 4.0, 300.0), (0, b + 30 * NS, 4.0, 340.0)])
    first, second = sorted(out, key=lambda c: c.start_ns)
    assert (first.start_ns, first.end_ns) == (DAY0, b)
    assert (second.start_ns, second.end_ns) == (b, DAY0 + 16 * H)
    assert first.energy_kwh == pytest.approx(1220 / 360, rel=1e-12)
    assert first.charge_kah == pytest.approx(305 / 360, rel=1e-12)
    assert first.covered_s == pytest.approx(10.0)
    assert second.energy_kwh == pytest.approx(1300 / 120, rel=1e-12)
    assert second.charge_kah == pytest.approx(325 / 120, rel=1e-12)
    assert second.covered_s == pytest.approx(30.0)
    assert first.energy_kwh + second.energy_kwh == pytest.approx(1280 * 40 / 3600, rel=1e-12)


def test_a_sample_on_the_boundary_ends_one_period_and_opens_the_next() -> None:
    # 07:59:50, 08:00:00, 08:00:10: one whole 10 s interval in each shift, nothing to split
    b = DAY0 + 8 * H
    out = run([(0, b - 10 * NS, 4.0, 300.0), (0, b, 4.0, 300.0), (0, b + 10 * NS, 4.0, 300.0)])
    assert [(c.start_ns, c.covered_s) for c in sorted(out, key=lambda c: c.start_ns)] == [
        (DAY0, pytest.approx(10.0)),
        (b, pytest.approx(10.0)),
    ]


def test_an_interval_across_two_boundaries_is_split_at_both() -> None:
    # max_gap 10 h; samples at 07:00 and 17:00, 1200 kW: shift 1 gets 07:00–08:00 (1 h),
    # shift 2 08:00–16:00 (8 h), shift 3 16:00–17:00 (1 h): 1200, 9600, 1200 kWh
    out = run([(0, DAY0 + 7 * H, 4.0, 300.0), (0, DAY0 + 17 * H, 4.0, 300.0)], gap=10 * H)
    got = sorted((c.start_ns, c.covered_s / 3600, c.energy_kwh) for c in out)
    assert got == [
        (DAY0, pytest.approx(1.0), pytest.approx(1200.0)),
        (DAY0 + 8 * H, pytest.approx(8.0), pytest.approx(9600.0)),
        (DAY0 + 16 * H, pytest.approx(1.0), pytest.approx(1200.0)),
    ]


def test_cells_arriving_interleaved_are_integrated_apart() -> None:
    # C1 at 4 V / 300 kA and C2 at 4.4 V / 300 kA, their samples alternating, 10 s apart each
    # C1: 1200 × 10 / 3600 = 3.3333 kWh; C2: 1320 × 10 / 3600 = 3.6667 kWh
    series = [
        (0, DAY0, 4.0, 300.0),
        (1, DAY0, 4.4, 300.0),
        (0, DAY0 + 10 * NS, 4.0, 300.0),
        (1, DAY0 + 10 * NS, 4.4, 300.0),
    ]
    last = {}
    out = run(series, cells=("P1/C1", "P1/C2"), last=last)
    energy = {c.cell: c.energy_kwh for c in out}
    assert energy == {
        CellKey("P1", "C1"): pytest.approx(12000 / 3600, rel=1e-12),
        CellKey("P1", "C2"): pytest.approx(13200 / 3600, rel=1e-12),
    }
    assert last == {
        CellKey("P1", "C1"): LastSample(DAY0 + 10 * NS, 4.0, 300.0),
        CellKey("P1", "C2"): LastSample(DAY0 + 10 * NS, 4.4, 300.0),
    }


def test_each_kind_gets_the_same_totals_in_its_own_period() -> None:
    # 10 s at 1200 kW: 3.3333 kWh in the shift 00:00–08:00 and in the day 00:00–24:00
    out = run([(0, DAY0, 4.0, 300.0), (0, DAY0 + 10 * NS, 4.0, 300.0)], kinds=("shift", "day"))
    periods = {c.kind: (c.start_ns, c.end_ns, c.energy_kwh) for c in out}
    assert periods == {
        "shift": (DAY0, DAY0 + 8 * H, pytest.approx(12000 / 3600, rel=1e-12)),
        "day": (DAY0, DAY0 + 24 * H, pytest.approx(12000 / 3600, rel=1e-12)),
    }


def test_potlines_that_do_not_count_are_not_integrated_but_remembered() -> None:
    series = [
        (0, DAY0, 4.0, 300.0),
        (1, DAY0, 4.0, 300.0),
        (0, DAY0 + 10 * NS, 4.0, 300.0),
        (1, DAY0 + 10 * NS, 4.0, 300.0),
    ]
    last = {}
    out = run(series, cells=("P1/C1", "P2/C1"), last=last, counts=lambda p: p == "P1")
    assert [c.cell for c in out] == [CellKey("P1", "C1")]
    assert set(last) == {CellKey("P1", "C1"), CellKey("P2", "C1")}


def test_an_empty_batch_contributes_nothing() -> None:
    last = {CellKey("P1", "C1"): LastSample(DAY0, 4.0, 300.0)}
    assert run([], last=last) == []
    assert last == {CellKey("P1", "C1"): LastSample(DAY0, 4.0, 300.0)}
