"""Which periods a backfill touches, and which recomputed points it keeps; by hand."""

from __future__ import annotations

from datetime import date, time

import numpy as np

from collector.engine.targets import Span, Target, days, kept, touched
from processors.kpi.periods import Calendar
from processors.model import Point

NS = 1_000_000_000
H = 3600 * NS
# UTC keeps the arithmetic visible: 2026-03-10 00:00 UTC is 1,773,100,800 s
CAL = Calendar("UTC", (time(0), time(8), time(16)))
D10 = 1_773_100_800 * NS
MARCH, APRIL = 1_772_323_200 * NS, 1_775_001_600 * NS


def test_a_row_touches_its_periods_and_those_of_its_neighbours_intervals() -> None:
    rows = {"P1": ({"C2"}, np.array([D10 + 10 * H]))}  # 10:00: inside shift 08-16
    (target,) = touched(CAL, ("shift", "day", "month"), rows, margin_ns=60 * NS)
    assert target.potline == "P1"
    assert target.cells == {"C2"}
    assert target.spans == {
        Span("shift", D10 + 8 * H, D10 + 16 * H),
        Span("day", D10, D10 + 24 * H),
        Span("month", MARCH, APRIL),
    }
    # 30 s after midnight: the interval from the sample before may lie in the day before
    rows = {"P1": ({"C2"}, np.array([D10 + 30 * NS]))}
    (target,) = touched(CAL, ("day",), rows, margin_ns=60 * NS)
    assert target.spans == {Span("day", D10 - 24 * H, D10), Span("day", D10, D10 + 24 * H)}


def test_days_are_every_period_that_overlaps_them() -> None:
    (target,) = days(CAL, ("shift", "day", "month"), ["P1"], date(2026, 3, 10), date(2026, 3, 11))
    assert target.cells is None
    assert sorted((s.kind, s.start_ns) for s in target.spans) == sorted(
        [("day", D10), ("day", D10 + 24 * H), ("month", MARCH)]
        + [("shift", D10 + k * 8 * H) for k in range(6)]
    )


def test_a_target_survives_the_request_table() -> None:
    target = Target("P1", {Span("day", D10, D10 + 24 * H)}, {"C1", "C2"})
    assert Target.of(target.to_json()) == target
    assert Target.of(Target("P1", set(), None).to_json()).cells is None


def test_kept_points_are_the_targets_last_ones() -> None:
    target = Target("P1", {Span("day", D10, D10 + 24 * H)}, {"C2"})
    day = ("period", "day")

    def point(m: str, tags: tuple[tuple[str, str], ...], t: int, v: float) -> Point:
        return Point(m, tags, {"v": v}, t)

    points = [
        point("sec_cell", (("potline", "P1"), ("cell", "C2"), day), D10, 1.0),
        point("sec_cell", (("potline", "P1"), ("cell", "C2"), day), D10, 2.0),  # rewritten
        point("sec_cell", (("potline", "P1"), ("cell", "C1"), day), D10, 3.0),  # not asked
        point("sec_potline", (("potline", "P1"), day), D10, 4.0),
        point("sec_potline", (("potline", "P1"), day), D10 - 24 * H, 5.0),  # day before
        point("sec_potline", (("potline", "P2"), day), D10, 6.0),  # other potline
        point("anode_effect", (("potline", "P1"), ("cell", "C2")), D10 + H, 7.0),
        point("anode_effect", (("potline", "P1"), ("cell", "C2")), D10 + 24 * H, 8.0),
    ]
    assert [p.fields["v"] for p in kept(points, target)] == [2.0, 4.0, 7.0]


def test_kept_merges_the_fields_two_processors_write_to_one_point() -> None:
    # the cycle's processor and the settle's write the same anode_change point
    target = Target("P1", {Span("day", D10, D10 + 24 * H)})
    tags = (("potline", "P1"), ("cell", "C1"), ("anode", "7"), ("block", "590"))
    points = [
        Point("anode_change", tags, {"target_days": 31.0}, D10 + H),
        Point("anode_change", tags, {"settle_min": 4, "settled": True}, D10 + H),
    ]
    (point,) = kept(points, target)
    assert point.fields == {"target_days": 31.0, "settle_min": 4, "settled": True}
