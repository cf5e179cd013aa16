import copy
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from collector.config.rules import AlarmRule, DerivedRule
from processors.model import Batch, Event, Point, SampleBatch
from processors.rules.alarms import AlarmProcessor
from processors.rules.derived import DerivedProcessor

S = 1_000_000_000
T0 = 1_700_000_000 * S

Row = tuple[float, str, float, dict[str, float] | None]
"""(seconds after T0, "potline/cell", voltage, extra), in arrival order."""


def samples(rows: list[Row]) -> SampleBatch:
    cells: list[tuple[str, str]] = []
    for _, key, _, _ in rows:
        potline, cell = key.split("/")
        if (potline, cell) not in cells:
            cells.append((potline, cell))
    return SampleBatch(
        cells=cells,
        cell_id=np.array([cells.index(tuple(r[1].split("/"))) for r in rows], dtype=np.int64),
        ts_ns=np.array([T0 + int(r[0] * S) for r in rows], dtype=np.int64),
        voltage_v=np.array([r[2] for r in rows], dtype=np.float64),
        current_ka=np.full(len(rows), 300.0),
        extra=[r[3] for r in rows],
    )


def run(rules: list[AlarmRule], rows: list[Row], cuts: tuple[int, ...] = ()) -> list[tuple]:
    """(seconds, cell, rule, state, value) of every alarm point, the stream cut at ``cuts``.

    State goes through JSON between batches, as it does through the journal.
    """
    proc = AlarmProcessor(rules)
    state: Any = None
    found = []
    for lo, hi in zip((0, *cuts), (*cuts, len(rows)), strict=True):
        before = copy.deepcopy(state)
        new_state, points = proc.apply(Batch(samples(rows[lo:hi]), []), state)
        assert state == before  # not mutated
        state = json.loads(json.dumps(new_state))
        found += [summary(p) for p in points]
    return found


def summary(p: Point) -> tuple:
    tags = dict(p.tags)
    return (
        (p.time_ns - T0) / S,
        f"{tags['potline']}/{tags['cell']}",
        tags["rule"],
        p.fields["state"],
        p.fields["value"],
    )


def alarm(name: str, **keys: Any) -> AlarmRule:
    return AlarmRule(name=name, **keys)


HIGH = alarm("high_voltage", field="cell_voltage_v", above=4.5, hold_s=600, severity="warning")
LOW = alarm("low_voltage", field="cell_voltage_v", below=3.8)
AE = alarm("anode_effect", field="cell_voltage_v", above=8.0, severity="critical")
NOISE = alarm("high_noise", field="noise_uohm", above=25, hold_s=1800)
BATH = alarm("bath_temperature", field="bath_temp_c", outside=[940, 975])
NO_DATA = alarm("no_data", stale_s=60, severity="critical")


def trace(cell: str, volts: list[float], every_s: float = 60.0, start_s: float = 0.0) -> list[Row]:
    return [(start_s + k * every_s, cell, v, None) for k, v in enumerate(volts)]


# Limit alarms


def test_point_has_the_contract_tags_and_fields() -> None:
    proc = AlarmProcessor([AE])
    _, points = proc.apply(Batch(samples(trace("P1/A01", [4.2, 31.5])), []), None)
    assert points == [
        Point(
            "alarm",
            (
                ("potline", "P1"),
                ("cell", "A01"),
                ("rule", "anode_effect"),
                ("severity", "critical"),
            ),
            {"state": "raised", "value": 31.5},
            T0 + 60 * S,
        )
    ]


def test_high_voltage_raised_after_the_hold_and_cleared() -> None:
    # above 4.5 V from t=60: held 600 s at t=660, raised there; back at 4.4 V at t=780
    volts = [4.3] + [4.6] * 11 + [4.7, 4.4, 4.6]
    assert run([HIGH], trace("P1/A01", volts)) == [
        (660.0, "P1/A01", "high_voltage", "raised", 4.6),
        (780.0, "P1/A01", "high_voltage", "cleared", 4.4),
    ]


def test_a_condition_that_breaks_before_the_hold_never_raises() -> None:
    # 540 s above, one sample at 4.5 V (not above), 540 s above again: never 600 s in a row
    volts = [4.6] * 10 + [4.5] + [4.6] * 10
    assert run([HIGH], trace("P1/A01", volts)) == []


def test_the_hold_counts_from_the_first_sample_of_the_run() -> None:
    # the run restarts at t=660 after the dip at t=600: raised at 660 + 600 = 1260
    volts = [4.6] * 10 + [4.4] + [4.6] * 12
    assert run([HIGH], trace("P1/A01", volts)) == [
        (1260.0, "P1/A01", "high_voltage", "raised", 4.6)
    ]


@pytest.mark.parametrize(
    ("limit", "bad", "good"),
    [({"above": 4.5}, 4.6, 4.4), ({"below": 3.8}, 3.7, 3.9), ({"outside": [3.8, 4.5]}, 4.6, 4.0)],
    ids=["above", "below", "outside"],
)
def test_every_limit_kind_holds_raises_and_clears(limit: dict, bad: float, good: float) -> None:
    # one sample a minute, hold 3 min: a 2-min excursion (t=60, 120) raises nothing; the
    # next one starts at t=240 and has held 180 s at t=420, raised there; cleared at t=480
    rule = alarm("x", field="cell_voltage_v", hold_s=180, **limit)
    volts = [good, bad, bad, good, bad, bad, bad, bad, good]
    assert run([rule], trace("P1/A01", volts)) == [
        (420.0, "P1/A01", "x", "raised", bad),
        (480.0, "P1/A01", "x", "cleared", good),
    ]


def test_hold_split_anywhere_by_batches_gives_the_same_points() -> None:
    volts = [4.3] + [4.6] * 11 + [4.7, 4.4] + [4.6] * 5 + [4.4] + [4.6] * 11
    rows = trace("P1/A01", volts) + trace("P1/A02", [4.6] * 12, start_s=30.0)
    rows.sort(key=lambda r: r[0])
    whole = run([HIGH, LOW], rows)
    assert [(t, c, s) for t, c, _, s, _ in whole] == [
        (630.0, "P1/A02", "raised"),
        (660.0, "P1/A01", "raised"),
        (780.0, "P1/A01", "cleared"),
        (1800.0, "P1/A01", "raised"),
    ]
    for cut in range(1, len(rows)):
        assert sorted(run([HIGH, LOW], rows, (cut,))) == sorted(whole), cut
    assert sorted(run([HIGH, LOW], rows, tuple(range(1, len(rows))))) == sorted(whole)


def test_low_voltage_without_hold() -> None:
    volts = [4.1, 3.7, 3.6, 3.8, 3.7]  # 3.8 is not below 3.8: cleared there
    assert run([LOW], trace("P1/A01", volts)) == [
        (60.0, "P1/A01", "low_voltage", "raised", 3.7),
        (180.0, "P1/A01", "low_voltage", "cleared", 3.8),
        (240.0, "P1/A01", "low_voltage", "raised", 3.7),
    ]


def test_anode_effect_raised_at_the_first_sample_above_and_cleared_at_or_below() -> None:
    volts = [4.2, 8.0, 12.0, 35.0, 8.0, 4.3]
    assert run([AE], trace("P1/A01", volts, every_s=10)) == [
        (20.0, "P1/A01", "anode_effect", "raised", 12.0),
        (40.0, "P1/A01", "anode_effect", "cleared", 8.0),
    ]


def test_outside_band_both_sides_and_samples_without_the_field_are_ignored() -> None:
    temps: list[float | None] = [960.0, 980.0, None, 976.0, 975.0, None, 938.0, 941.0]
    rows = [
        (k * 60.0, "P1/A01", 4.2, None if t is None else {"bath_temp_c": t})
        for k, t in enumerate(temps)
    ]
    assert run([BATH], rows) == [
        (60.0, "P1/A01", "bath_temperature", "raised", 980.0),
        (240.0, "P1/A01", "bath_temperature", "cleared", 975.0),  # 975 is inside the band
        (360.0, "P1/A01", "bath_temperature", "raised", 938.0),
        (420.0, "P1/A01", "bath_temperature", "cleared", 941.0),
    ]


def test_high_noise_held_for_half_an_hour() -> None:
    noise = [30.0] * 31  # one a minute: 1800 s above 25 µΩ at the 31st
    rows = [(k * 60.0, "P1/A01", 4.2, {"noise_uohm": n}) for k, n in enumerate(noise)]
    assert run([NOISE], rows) == [(1800.0, "P1/A01", "high_noise", "raised", 30.0)]
    assert run([NOISE], rows[:-1]) == []


def test_alarm_on_a_derived_field() -> None:
    # resistance (4.2 - 1.65) / 300 * 1000 = 8.5 µΩ, then (4.8 - 1.65) / 300 * 1000 = 10.5
    derived = DerivedProcessor(
        [
            DerivedRule(
                name="resistance_uohm", expr="(cell_voltage_v - 1.65) / line_current_ka * 1000"
            )
        ],
        {},
    )
    rule = alarm("high_resistance", field="resistance_uohm", above=10.0)
    sb = samples(trace("P1/A01", [4.2, 4.8, 4.2]))
    sb = replace(sb, extra=derived.derive(sb))
    _, points = AlarmProcessor([rule]).apply(Batch(sb, []), None)
    assert [summary(p) for p in points] == [
        (60.0, "P1/A01", "high_resistance", "raised", pytest.approx(10.5)),
        (120.0, "P1/A01", "high_resistance", "cleared", pytest.approx(8.5)),
    ]


def test_potline_and_cell_scope() -> None:
    p2 = alarm("anode_effect", field="cell_voltage_v", above=8.0, potlines=["P2"])
    a02 = alarm("ae_a02", field="cell_voltage_v", above=8.0, cells=["A02"])
    both = alarm("ae_p1_a01", field="cell_voltage_v", above=8.0, potlines=["P1"], cells=["A01"])
    rows = [
        (0.0, "P1/A01", 30.0, None),
        (0.0, "P1/A02", 30.0, None),
        (0.0, "P2/A01", 30.0, None),
        (0.0, "P2/A02", 30.0, None),
    ]
    assert sorted((c, r) for _, c, r, _, _ in run([p2, a02, both], rows)) == [
        ("P1/A01", "ae_p1_a01"),
        ("P1/A02", "ae_a02"),
        ("P2/A01", "anode_effect"),
        ("P2/A02", "ae_a02"),
        ("P2/A02", "anode_effect"),
    ]


def test_each_cell_holds_on_its_own() -> None:
    rows = sorted(
        trace("P1/A01", [4.6] * 11) + trace("P1/A02", [4.6] * 5 + [4.4] + [4.6] * 5),
        key=lambda r: r[0],
    )
    assert run([HIGH], rows) == [(600.0, "P1/A01", "high_voltage", "raised", 4.6)]


def test_a_removed_rule_leaves_no_state() -> None:
    state, _ = AlarmProcessor([HIGH, AE]).apply(Batch(samples(trace("P1/A01", [30.0])), []), None)
    assert set(state["alarms"]) == {"high_voltage", "anode_effect"}
    state, _ = AlarmProcessor([HIGH]).apply(Batch(samples(trace("P1/A01", [30.0])), []), state)
    assert set(state["alarms"]) == {"high_voltage"}


def test_a_raised_alarm_of_a_removed_rule_is_cleared_without_a_value() -> None:
    state, _ = AlarmProcessor([AE]).apply(Batch(samples(trace("P1/A01", [30.0])), []), None)
    rows = trace("P1/A01", [30.0], start_s=60) + trace("P1/A02", [4.2], start_s=90)
    _, points = AlarmProcessor([HIGH]).apply(Batch(samples(rows), []), state)
    assert points == [
        Point(
            "alarm",
            (
                ("potline", "P1"),
                ("cell", "A01"),
                ("rule", "anode_effect"),
                ("severity", "critical"),
            ),
            {"state": "cleared"},
            T0 + 90 * S,  # the batch's newest sample
        )
    ]


def test_a_severity_change_clears_the_old_alarm_and_raises_anew_after_the_hold() -> None:
    state, _ = AlarmProcessor([AE]).apply(Batch(samples(trace("P1/A01", [30.0])), []), None)
    warning = AE.model_copy(update={"severity": "warning"})
    _, points = AlarmProcessor([warning]).apply(
        Batch(samples(trace("P1/A01", [31.0], start_s=60)), []), state
    )
    assert [(dict(p.tags)["severity"], p.fields["state"], p.time_ns) for p in points] == [
        ("critical", "cleared", T0 + 60 * S),
        ("warning", "raised", T0 + 60 * S),
    ]


def test_a_limit_named_by_a_setting_follows_each_potlines_value() -> None:
    ae = alarm("anode_effect", field="cell_voltage_v", above="anode_effect_threshold_v")
    settings = {"P1": {"anode_effect_threshold_v": 8.0}, "P2": {"anode_effect_threshold_v": 7.5}}
    rows = sorted(
        trace("P1/A01", [7.8, 8.2]) + trace("P2/B01", [7.8, 8.2]) + trace("P9/Z01", [30.0]),
        key=lambda r: r[0],
    )
    _, points = AlarmProcessor([ae], settings).apply(Batch(samples(rows), []), None)
    # P2's own threshold raises at 7.8; P1's at 8.2; P9 is not configured: no threshold
    assert sorted(summary(p) for p in points) == [
        (0.0, "P2/B01", "anode_effect", "raised", 7.8),
        (60.0, "P1/A01", "anode_effect", "raised", 8.2),
    ]


def test_a_raised_alarm_survives_a_restart_and_clears_after_it() -> None:
    state, points = AlarmProcessor([AE]).apply(Batch(samples(trace("P1/A01", [30.0])), []), None)
    assert [summary(p)[3] for p in points] == ["raised"]
    state = json.loads(json.dumps(state))
    _, points = AlarmProcessor([AE]).apply(
        Batch(samples(trace("P1/A01", [31.0, 4.2], start_s=10.0, every_s=10.0)), []), state
    )
    assert [summary(p) for p in points] == [(20.0, "P1/A01", "anode_effect", "cleared", 4.2)]


# Stale alarms


def test_stale_raised_at_the_instant_the_cell_fell_silent_and_cleared_when_data_resumes() -> None:
    # A01 reports every 10 s; A02 sends at 0 and 10, nothing until 150
    a02 = [(0.0, "P1/A02", 4.2, None), (10.0, "P1/A02", 4.2, None), (150.0, "P1/A02", 4.2, None)]
    rows = sorted([*trace("P1/A01", [4.2] * 20, every_s=10.0), *a02], key=lambda r: r[0])
    expected = [
        (70.0, "P1/A02", "no_data", "raised", 60.0),  # last sample 10 s + 60 s
        (150.0, "P1/A02", "no_data", "cleared", 140.0),  # silent 150 - 10 = 140 s
    ]
    assert run([NO_DATA], rows) == expected
    for cut in range(1, len(rows)):
        assert run([NO_DATA], rows, (cut,)) == expected, cut
    assert run([NO_DATA], rows, tuple(range(1, len(rows)))) == expected


def test_stale_stays_raised_across_batches_until_the_cell_reports() -> None:
    a01 = trace("P1/A01", [4.2] * 30, every_s=10.0)
    rows = sorted(
        [(0.0, "P1/A02", 4.2, None), *a01, (300.0, "P1/A02", 4.2, None)], key=lambda r: r[0]
    )
    assert run([NO_DATA], rows, (10, 20, 25)) == [
        (60.0, "P1/A02", "no_data", "raised", 60.0),
        (300.0, "P1/A02", "no_data", "cleared", 300.0),
    ]


def test_stale_is_judged_against_the_newest_sample_of_the_cells_own_potline() -> None:
    # P2 runs on to 300 s; P1 has only its two cells at 0 and 50: P1's time is 50 s
    rows = [
        (0.0, "P1/A01", 4.2, None),
        (0.0, "P1/A02", 4.2, None),
        (50.0, "P1/A01", 4.2, None),
        *trace("P2/B01", [4.2] * 6, every_s=60.0),
    ]
    assert run([NO_DATA], rows) == []


def test_a_silent_potline_raises_nothing_and_unknown_cells_are_not_stale() -> None:
    rows = trace("P1/A01", [4.2] * 3, every_s=10.0)
    assert run([NO_DATA], rows) == []


def test_stale_scope() -> None:
    only_a02 = alarm("no_data_a02", stale_s=60, cells=["A02"])
    only_p2 = alarm("no_data_p2", stale_s=60, potlines=["P2"])
    rows = [
        (0.0, "P1/A02", 4.2, None),
        (0.0, "P1/A03", 4.2, None),
        (0.0, "P2/A03", 4.2, None),
        (0.0, "P2/A04", 4.2, None),
        (100.0, "P1/A01", 4.2, None),
        (100.0, "P2/A04", 4.2, None),
    ]
    assert sorted((c, r) for _, c, r, _, _ in run([only_a02, only_p2], rows)) == [
        ("P1/A02", "no_data_a02"),
        ("P2/A03", "no_data_p2"),
    ]


def test_a_cell_its_gateway_took_offline_is_stale_at_once_and_clears_on_its_next_sample() -> None:
    proc = AlarmProcessor([NO_DATA, HIGH])
    state, _ = proc.apply(Batch(samples(trace("P1/A01", [4.2, 4.2], every_s=10.0)), []), None)
    death = Event("P1", "A01", T0 + 15 * S, "offline", {"message": "DDEATH"})
    stale = Event("P1", "A01", T0 + 5 * S, "offline", {})  # older than its last sample: moot
    state, points = proc.apply(Batch(samples([]), [death, stale]), json.loads(json.dumps(state)))
    assert [summary(p) for p in points] == [(15.0, "P1/A01", "no_data", "raised", 0.0)]
    _, points = proc.apply(Batch(samples([(45.0, "P1/A01", 4.2, None)]), []), state)
    assert [summary(p) for p in points] == [(45.0, "P1/A01", "no_data", "cleared", 35.0)]
