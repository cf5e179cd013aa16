"""From inbox rows to the batch: the arrival column (contract 6.5)."""

import numpy as np

from collector.engine.batch import in_order, sample_batch, timed
from processors.model import UNTIMED

T = 1_709_251_200_000_000_000
NAMES = {7: ("P1", "C1"), 9: ("P1", "C2")}


def test_arrival_is_ts_plus_the_stored_lag_and_untimed_rows_are_marked() -> None:
    # lag_code: 0 untimed, 90_001 a lag of 90 s, 1 a lag of 0 ms, -1_500 a clock 1.5 s ahead
    batch = sample_batch(
        NAMES.__getitem__,
        [7, 9, 7, 9],
        [T, T, T + 1, T + 2],
        [4.2] * 4,
        [300.0] * 4,
        [None] * 4,
        (0, 90_001, 1, -1_500),
    )
    assert batch.arrival_ns is not None
    assert batch.arrival_ns.tolist() == [UNTIMED, T + 90 * 10**9, T + 1, T + 2 - 1_500_000_000]


def test_a_batch_with_no_live_sample_has_no_arrival_column() -> None:
    batch = sample_batch(
        NAMES.__getitem__, [7, 9], [T, T], [4.2] * 2, [300.0] * 2, [None] * 2, (0, 0)
    )
    assert batch.arrival_ns is None


def test_late_samples_leave_with_their_arrival() -> None:
    batch = sample_batch(
        NAMES.__getitem__,
        [7, 7, 7],
        [T + 5, T + 1, T + 6],
        [4.2] * 3,
        [300.0] * 3,
        [None] * 3,
        (3, 0, 2),
    )
    kept, late, _ = in_order(batch, {})
    assert late.tolist() == [False, True, False]
    assert kept.arrival_ns is not None
    assert kept.arrival_ns.tolist() == [T + 5 + 2_000_000, T + 6 + 1_000_000]
    assert np.array_equal(kept.ts_ns, [T + 5, T + 6])


def test_the_live_samples_late_ones_included_are_given_when_a_live_one_is_late() -> None:
    batch = sample_batch(
        NAMES.__getitem__,
        [7, 9, 7, 7],
        [T + 5, T, T + 1, T + 6],
        [4.2] * 4,
        [300.0] * 4,
        [None] * 4,
        (1, 0, 3, 0),
    )
    _, late, _ = in_order(batch, {})
    assert late.tolist() == [False, False, True, False]
    live = timed(batch, late)
    assert live is not None  # C1's ts T + 1 is late, and live: only Batch.timed holds it
    assert live.cells == [("P1", "C1")]
    assert live.ts_ns.tolist() == [T + 5, T + 1]
    assert live.arrival_ns is not None
    assert live.arrival_ns.tolist() == [T + 5, T + 1 + 2_000_000]
    untimed_late = sample_batch(
        NAMES.__getitem__, [7, 7], [T + 5, T + 1], [4.2] * 2, [300.0] * 2, [None] * 2, (1, 0)
    )
    assert timed(untimed_late, in_order(untimed_late, {})[1]) is None  # samples hold them all
