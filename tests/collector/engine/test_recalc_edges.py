"""A recalculation reads the samples of an anode change's level and settling outside its
periods for that change's cell alone (contracts 5.2 and 6.3), from a real InfluxDB 1.x.

The day of 2024-03-10 (Asia/Shanghai, 2024-03-09T16:00Z to 2024-03-10T16:00Z) is redone.
C1 has a change 10.5 minutes after the day's start and one 4.5 minutes before its end, C2
one at noon; each follows the trace of ``tests.processors.kpi.test_anode_settle``: 4.10 V
before the change, 4.50 in its minute, then 4.40, 4.30, 4.20 and 4.12 V for the rest of
the hour, then 4.10 V again. With the band of
50 mV, minutes 1 to 3 are out of it (300, 200, 100 mV above the level) and every minute
from 4 on is in it (20 mV): each change settles at minute 4, its peak 300 mV. The late
change's minutes 4 to 13 run to 8 minutes past the day's end; the early one's level (the
30 minutes before its minute) begins 20 minutes before the day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from collector import build
from collector.config.loader import load_config
from collector.engine.history import History
from collector.engine.recalc import Outcome, Recalculation
from collector.engine.targets import days
from collector.sinks.influxql import InfluxQL
from processors.model import SampleBatch
from tests.harness import write_config
from tests.servers import InfluxV1, http

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MIN = 60 * NS
START = int(datetime(2024, 3, 9, 16, tzinfo=UTC).timestamp()) * NS  # 2024-03-10 00:00 local
END = START + 1440 * MIN
CHANGES = {  # the minute each change is in; the change is 30 s into it
    "C1": [START + 10 * MIN, END - 5 * MIN],
    "C2": [START + 720 * MIN],
}
TRACE = [4.50, 4.40, 4.30, 4.20]  # the change's minute, then minutes 1 to 3
SETTLED = {"settle_min": 4, "peak_excess_mv": 300.0, "settled": True}


def volts(cell: str, t: int) -> float:
    """The trace in the hour from each of the cell's changes, else 4.10 V."""
    for minute in CHANGES[cell]:
        if minute + 30 * NS <= t < minute + 60 * MIN:
            k = (t - minute) // MIN
            return TRACE[k] if k < len(TRACE) else 4.12
    return 4.10


class Asked(History):
    """The database's history, noting the (start, end, cell) of every samples query."""

    def __init__(self, query: InfluxQL) -> None:
        super().__init__(query)
        self.asked: list[tuple[int, int, tuple[str, ...] | None]] = []

    def samples(
        self, potline: str, t0_ns: int, t1_ns: int, *, cells: Sequence[str] | None = None
    ) -> SampleBatch:
        self.asked.append((t0_ns, t1_ns, None if cells is None else tuple(cells)))
        return super().samples(potline, t0_ns, t1_ns, cells=cells)


def recalculated(tmp_path: Path, influx: InfluxV1, db: str) -> tuple[Outcome, Asked]:
    """Every 10 s of each cell within 40 minutes of a change or an edge of the day, its
    changes; the day and its shifts redone."""
    lines = []
    for cell, minutes in CHANGES.items():
        around = {START, END, *minutes}
        times = sorted({t for m in around for t in range(m - 40 * MIN, m + 40 * MIN, 10 * NS)})
        lines += [
            f"cell,potline=P1,cell={cell} voltage_v={volts(cell, t)},current_ka=300 {t}"
            for t in times
        ]
        lines += [
            f'cell_event,potline=P1,cell={cell},type=anode_change anode=7,block="590" {m + 30 * NS}'
            for m in minutes
        ]
    status, body = http("POST", f"{influx.url}/write?db={db}", "\n".join(lines).encode())
    assert status == 204, body
    cfg = load_config(write_config(tmp_path, mqtt_port=1, influx_url=influx.url, database=db))
    (target,) = days(
        build.calendar(cfg), ("shift", "day"), ["P1"], date(2024, 3, 10), date(2024, 3, 10)
    )
    history = Asked(InfluxQL(cfg))
    recalc = Recalculation(
        lambda: build.recomputable_processors(cfg),
        history,
        build.reach(cfg),
        now_ns=END + 2 * 1440 * MIN,
    )
    return recalc.run(target, {}), history


def test_a_change_late_in_the_day_is_judged_on_its_cells_samples_after_the_day(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    outcome, _ = recalculated(tmp_path, influx_v1, influx_db)
    judged = {
        (dict(p.tags)["cell"], p.time_ns): {k: p.fields.get(k) for k in SETTLED}
        for p in outcome.points
        if p.measurement == "anode_change"
    }
    assert judged == {
        ("C1", START + 10 * MIN + 30 * NS): SETTLED,  # its level from before the day
        ("C1", END - 5 * MIN + 30 * NS): SETTLED,  # its minutes 4 to 13 after the day
        ("C2", START + 720 * MIN + 30 * NS): SETTLED,
    }


def test_only_the_cell_with_a_change_near_an_edge_is_read_outside_the_day(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    """The whole potline is read over the day and the gap limit (60 s) on each side; C1
    from its early change's minute less 30 and up to its late change's minute plus the
    longest settling (480) plus 2; C2 never on its own."""
    _, history = recalculated(tmp_path, influx_v1, influx_db)
    potline = [(a, b) for a, b, cell in history.asked if cell is None]
    assert min(a for a, _ in potline) == START - MIN
    assert max(b for _, b in potline) == END + MIN
    one_cell = [ask for ask in history.asked if ask[2] is not None]
    assert one_cell == [
        (START - 20 * MIN, START - MIN, ("C1",)),
        (END + MIN, END - 5 * MIN + 482 * MIN, ("C1",)),
    ]
