"""A state checkpointed by the release before the period ledger carries on exactly: the
next batch gives the same points and state as with the state this release writes."""

from pathlib import Path

import orjson
import pytest

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
    assert merged(points) == merged(expected)
    assert state == expected_state
    assert len(points) == len(expected)
