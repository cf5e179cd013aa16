import numpy as np
import pytest

from processors.ordering import grouped_cummax, late_mask

T0 = 1_709_251_200_000_000_000  # ns; beyond float precision, on purpose
S = 1_000_000_000
NAMES = {1: "P1/C001", 2: "P1/C002"}


def run(codes, offsets, newest):
    ts = np.array([T0 + o for o in offsets], dtype=np.int64)
    return late_mask(np.array(codes, dtype=np.int64), ts, NAMES.__getitem__, newest)


@pytest.mark.parametrize(
    ("codes", "offsets", "newest", "late", "after"),
    [
        ([1, 1, 1], [0, S, 2 * S], {}, [0, 0, 0], {"P1/C001": T0 + 2 * S}),
        ([1, 1, 1], [0, 2 * S, S], {}, [0, 0, 1], {"P1/C001": T0 + 2 * S}),
        ([1, 2, 1, 2], [S, 0, 0, S], {}, [0, 0, 1, 0], {"P1/C001": T0 + S, "P1/C002": T0 + S}),
        ([1, 1], [0, 1], {"P1/C001": T0}, [1, 0], {"P1/C001": T0 + 1}),
        ([2], [-S], {"P1/C001": T0, "P1/C002": T0}, [1], {"P1/C001": T0, "P1/C002": T0}),
        ([1, 1], [5, 5], {}, [0, 1], {"P1/C001": T0 + 5}),
    ],
    ids=["in-order", "one-late", "two-cells", "nanosecond-after-state", "all-late", "same-ts"],
)
def test_late_mask(codes, offsets, newest, late, after) -> None:
    before = dict(newest)
    flags, updated = run(codes, offsets, newest)
    assert flags.tolist() == [bool(x) for x in late]
    assert updated == after
    assert newest == before


def test_empty_batch() -> None:
    flags, updated = run([], [], {"P1/C001": T0})
    assert flags.tolist() == []
    assert updated == {"P1/C001": T0}


def test_grouped_cummax_runs_within_each_group() -> None:
    values = np.array([5, 3, 7, 2, 2, 9, 1, 4], dtype=np.int64) * 10**17  # ns epochs' size
    group = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    want = np.array([5, 5, 7, 2, 2, 9, 1, 4], dtype=np.int64) * 10**17
    assert grouped_cummax(values, group).tolist() == want.tolist()
