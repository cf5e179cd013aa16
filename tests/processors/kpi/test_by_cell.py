"""The batch sorted by cell, and its intervals, made once for every processor."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from processors.kpi.by_cell import ByCell
from processors.model import SampleBatch

NS = 1_000_000_000
H = 3600 * NS
T = 1_700_000_000 * NS


def batch() -> SampleBatch:
    """C2 (code 1) at T and T+10 s, C1 (code 0) at T+5 s and T+20 s, in time order."""
    return SampleBatch(
        [("P1", "C1"), ("P1", "C2")],
        np.array([1, 0, 1, 0], dtype=np.int64),
        np.array([T, T + 5 * NS, T + 10 * NS, T + 20 * NS], dtype=np.int64),
        np.array([4.2, 4.1, 4.4, 4.3]),
        np.array([300.0, 310.0, 302.0, 320.0]),
        [None] * 4,
    )


def test_the_samples_are_sorted_by_cell_then_time() -> None:
    s = ByCell(batch())
    assert s.code.tolist() == [0, 0, 1, 1]
    assert s.t.tolist() == [T + 5 * NS, T + 20 * NS, T, T + 10 * NS]
    assert s.v.tolist() == [4.1, 4.3, 4.2, 4.4]
    assert s.heads.tolist() == [0, 2]


def test_columns_the_batch_carries_sorted_are_taken_as_they_are() -> None:
    """Marked columns (here deliberately other values) are used, not sorted again."""
    mine = (
        np.array([0, 1]),
        np.array([T, T + NS]),
        np.array([1.0, 2.0]),
        np.array([3.0, 4.0]),
    )
    s = ByCell(replace(batch(), by_cell=mine))
    assert s.v.tolist() == [1.0, 2.0]
    assert s.i.tolist() == [3.0, 4.0]


def test_each_interval_by_hand_from_the_cells_samples_before() -> None:
    """C1 resumed from 4.0 V 300 kA at T, C2 not: C2's first sample opens no interval.

    C1 from T to T+5 s: (4.0·300 + 4.1·310)/2 = 1235.5 kW for 5 s, (300 + 310)/2 kA for
    5 s; from T+5 to T+20 s: (4.1·310 + 4.3·320)/2 kW for 15 s. C2 from T to T+10 s:
    (4.2·300 + 4.4·302)/2 kW for 10 s.
    """
    s = ByCell(batch())
    steps = s.steps([(T, 4.0, 300.0), None], 60 * NS)
    assert steps.ok.tolist() == [True, True, False, True]
    energy, charge, covered = (column.tolist() for column in steps.sums)
    assert energy == pytest.approx(
        [
            (4.0 * 300 + 4.1 * 310) / 2 * 5 / 3600,
            (4.1 * 310 + 4.3 * 320) / 2 * 15 / 3600,
            (4.2 * 300 + 4.4 * 302) / 2 * 10 / 3600,
        ],
        rel=1e-12,
    )
    assert charge[0] == pytest.approx((300 + 310) / 2 * 5 / 3600, rel=1e-12)
    assert covered == [5.0, 15.0, 10.0]


def test_the_intervals_are_made_again_for_other_samples_before() -> None:
    """Two processors with the same last samples share the intervals; a third, whose last
    sample of C1 is older than the gap limit, gets its own."""
    s = ByCell(batch())
    first = s.steps([(T, 4.0, 300.0), None], 60 * NS)
    assert s.steps([(T, 4.0, 300.0), None], 60 * NS) is first
    other = s.steps([(T - H, 4.0, 300.0), None], 60 * NS)
    assert other is not first
    assert other.ok.tolist() == [False, True, False, True]
