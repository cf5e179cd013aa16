"""A recalculation redoes the settling after an anode change (contracts 5.2 and 6.3).

The day of 2024-03-10 (Asia/Shanghai) is redone from a history that holds the trace of
``tests.processors.kpi.test_anode_settle`` (settles at minute 4, 300 mV) around a change at
10:00:30 local; the month also holds a change of 03-03 stored with ``settle_min`` 12. The
change's point gets its settle fields beside its cycle's, and March's ``anode_settle`` is
made of both: 2 changes, mean 8, longest 12.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from collector import build
from collector.config.inputs import InputRule
from collector.config.models import Config
from collector.config.rules import Rules
from collector.engine.recalc import Recalculation
from collector.engine.targets import days
from processors.model import Batch, Event, Point, SampleBatch
from processors.testing import anode_change, at_rate, samples

NS = 1_000_000_000
MIN = 60 * NS
C = int(datetime(2024, 3, 10, 2, 0, tzinfo=UTC).timestamp()) * NS  # 10:00 local
CHANGE = C + 30 * NS
EARLIER = int(datetime(2024, 3, 3, 2, 0, tzinfo=UTC).timestamp()) * NS
MARCH = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS
TAGS = (("anode", "7"), ("block", "590"), ("cell", "C1"), ("potline", "P1"))
CONFIG = Config(
    source=Path("cellmon.yaml"),
    plant={
        "timezone": "Asia/Shanghai",
        "potlines": [{"id": "P1", "baseline_sec_kwh_per_t": 13450}],
    },
    rules=Rules(inputs=[InputRule(name="t", topic="smelter/{potline}/{cell}/t", kind="telemetry")]),
)


def volts(t: int) -> float:
    after = [4.40, 4.30, 4.20]
    k = (t - C) // MIN
    if t < CHANGE:
        return 4.10
    return 4.50 if k == 0 else after[k - 1] if k <= len(after) else 4.12


class History:
    """The database's history: the trace and the change, and the change of 03-03 stored."""

    def __init__(self) -> None:
        self.samples = samples(
            [("P1", "C1")], at_rate(C - 40 * MIN, C + 40 * MIN, 10), voltage=lambda c, t: volts(t)
        )
        self.changes = [anode_change(("P1", "C1"), CHANGE, 7)]

    def batches(self, potline: str, t0_ns: int, t1_ns: int, step_ns: int) -> Iterator[Batch]:
        for a in range(t0_ns, t1_ns, step_ns):
            b = min(a + step_ns, t1_ns)
            keep = (self.samples.ts_ns >= a) & (self.samples.ts_ns < b)
            sb = samples(
                [("P1", "C1")], self.samples.ts_ns[keep].tolist(), voltage=lambda c, t: volts(t)
            )
            yield Batch(sb, self.events(potline, a, b))

    def each(self, windows: Sequence[tuple[tuple[str, str], int, int]]) -> Iterator[SampleBatch]:
        for _, a, b in windows:  # the one cell's
            keep = (self.samples.ts_ns >= a) & (self.samples.ts_ns < b)
            times = self.samples.ts_ns[keep].tolist()
            yield samples([("P1", "C1")], times, voltage=lambda c, t: volts(t))

    def events(
        self, potline: str, t0_ns: int, t1_ns: int, of_type: str | None = None
    ) -> list[Event]:
        return [e for e in self.changes if t0_ns <= e.ts_ns < t1_ns and of_type in (None, e.type)]

    def stored(
        self, measurement: str, potline: str, t0_ns: int, t1_ns: int, *, where: str = ""
    ) -> list[Point]:
        fields: dict[str, Any] = {
            "target_days": 31.0,
            "settle_min": 12,
            "peak_excess_mv": 80.0,
            "settled": True,
        }
        earlier = Point("anode_change", TAGS, fields, EARLIER)
        return [earlier] if measurement == "anode_change" and t0_ns <= EARLIER < t1_ns else []

    def days(self, measurement: str, potline: str, t0_ns: int, t1_ns: int) -> list[Point]:
        return []


def test_the_day_redone_gives_the_settling_and_the_month_counts_both_changes() -> None:
    (target,) = days(
        build.calendar(CONFIG),
        ("shift", "day", "month"),
        ["P1"],
        date(2024, 3, 10),
        date(2024, 3, 10),
    )
    recalc = Recalculation(
        lambda: build.recomputable_processors(CONFIG),
        History(),  # the History of an InfluxDB, as far as a recalculation reads it
        build.reach(CONFIG),
        now_ns=C + 2 * 86_400 * NS,
    )
    outcome = recalc.run(target, {})
    (change,) = [p for p in outcome.points if p.measurement == "anode_change"]
    assert change.time_ns == CHANGE
    assert change.fields["settle_min"] == 4
    assert abs(float(change.fields["peak_excess_mv"]) - 300.0) < 1e-9
    assert change.fields["settled"] is True
    assert "target_days" in change.fields  # the cycle's fields kept beside them
    (month,) = [p for p in outcome.points if p.measurement == "anode_settle"]
    assert month.time_ns == MARCH
    assert month.fields == {
        "changes": 2,
        "settle_min_mean": 8.0,
        "settle_min_max": 12,
        "unsettled": 0,
    }
    assert outcome.stale == []
