import numpy as np
import pytest

from simulator.parameters import SimParams
from simulator.payloads import PotlineSim
from tests.simulator.sims import DAY, HOUR, T0, S, all_payloads, sim

# ---- determinism: every draw is keyed by seed, potline and block ------------------------


def test_same_seed_gives_the_same_telemetry_and_events() -> None:
    a, b = sim(seed=7), sim(seed=7)
    assert all_payloads(a, T0 + HOUR) == all_payloads(b, T0 + HOUR)
    assert a.events(T0 - 10 * DAY, T0) == b.events(T0 - 10 * DAY, T0)


def test_another_seed_gives_other_telemetry_and_events() -> None:
    a, b = sim(seed=7), sim(seed=8)
    assert all_payloads(a, T0 + HOUR) != all_payloads(b, T0 + HOUR)
    assert a.events(T0 - 10 * DAY, T0) != b.events(T0 - 10 * DAY, T0)


def test_another_potline_with_the_same_seed_is_not_a_clone() -> None:
    p1 = PotlineSim("P1", 3, seed=7, start_ns=T0)
    p2 = PotlineSim("P2", 3, seed=7, start_ns=T0)
    assert all_payloads(p1, T0 + 10 * S) != all_payloads(p2, T0 + 10 * S)


def test_any_window_equals_the_same_part_of_a_longer_one() -> None:
    s = sim(cells=3, interval_s=7.0)
    whole = s.columns(-300, 3000)
    head, tail = s.columns(-300, 1111), s.columns(811, 1889)
    for name in ("ts_ns", "line_current_ka", "cell_voltage_v", "bath_temp_c", "noise_uohm"):
        joined = np.concatenate([getattr(head, name), getattr(tail, name)])
        assert np.array_equal(getattr(whole, name), joined), name
    cut = T0 - 13 * DAY - 5
    assert s.events(T0 - 40 * DAY, T0) == s.events(T0 - 40 * DAY, cut) + s.events(cut, T0)


def test_more_cells_leave_the_first_cells_unchanged() -> None:
    few, many = sim(cells=2), sim(cells=5)
    for a, b in zip(few.telemetry(T0, T0 + HOUR), many.telemetry(T0, T0 + HOUR), strict=True):
        assert a.payloads == b.payloads[:2]
    assert few.events(T0, T0 + 20 * DAY) == [
        e for e in many.events(T0, T0 + 20 * DAY) if e.cell in few.cell_ids
    ]


# ---- parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"anodes_per_cell": 0}, "anodes_per_cell"),
        ({"cycle_jitter_days": 31.0}, "cycle_jitter_days"),
        ({"ae_rate_per_cell_day": 25.0}, "ae_rate_per_cell_day"),
        ({"ae_duration_s": (60.0, 4000.0)}, "ae_duration_s"),
        ({"tap_jitter_h": 12.0}, "tap_jitter_h"),
        ({"other_block_share": 1.5}, "other_block_share"),
    ],
)
def test_impossible_parameters_are_refused(bad, named) -> None:
    with pytest.raises(ValueError, match=named):
        SimParams(**bad)
