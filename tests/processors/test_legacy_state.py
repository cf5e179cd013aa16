"""A state checkpointed by the release before the period ledger carries on exactly: the
next batch gives the same points and state as with the state this release writes.

Except for what that release did not count: the anode effects' extra energy (contract 5.3)
of a period open at the upgrade counts from the upgrade on (``cellmon recalc`` redoes the
period from the raw data), and the level before an effect is known from the next sample
at or below the threshold. And the release before opened an anode period at its first
change, not its first sample: a period open at the upgrade without a change gets its
``changes`` 0 point with the next batch (the new state has written it already).
"""

from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.base import checkpoint
from processors.model import Point
from processors.testing import merged
from tests.processors.legacy_batches import factories, first_batch, second_batch

OLD_STATES = orjson.loads(
    (Path(__file__).parent / "data" / "states_before_ledger.json").read_bytes()
)


@pytest.mark.parametrize("name", sorted(factories()))
def test_an_old_state_is_read_as_the_new_one(name: str) -> None:
    proc = factories()[name]()
    new_state, _ = proc.apply(first_batch(), None)
    expected_state, expected = proc.apply(second_batch(), new_state)
    state, points = proc.apply(second_batch(), OLD_STATES[name])
    points = [p for p in points if not opened_at_upgrade(p, expected)]
    assert known(merged(points)) == known(merged(expected))
    assert known(checkpoint(proc, state)) == known(checkpoint(proc, expected_state))
    assert len(points) == len(expected)


def opened_at_upgrade(point: Point, expected: list[Point]) -> bool:
    """An anode period without changes that the old state did not hold open."""
    unchanged = point.measurement == "anode_potline" and point.fields == {"changes": 0}
    return unchanged and all((e.tags, e.time_ns) != (point.tags, point.time_ns) for e in expected)


NOT_COUNTED_BEFORE = frozenset(("ae_energy_kwh", "ae_voltage_mv", "ae_kwh_per_t", "base_v"))


def known(data: Any) -> Any:
    """``data`` without what the release before did not count."""
    if isinstance(data, dict):
        return {k: known(v) for k, v in data.items() if k not in NOT_COUNTED_BEFORE}
    if isinstance(data, list):
        return [known(v) for v in data]
    return data
