"""Every query of every panel of every board runs against InfluxDB 1.x filled by the real
pipeline, over the range Grafana gives that panel for a "now" on the 10th of a month, and
returns a value in every column (that the committed JSON is what scripts/build_dashboards.py
makes: tests/scripts/dashboards)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
import pytest

from simulator.parameters import SimParams
from simulator.payloads import PotlineSim
from tests.grafana.timerange import panel_range, time_filter
from tests.harness import (
    DEFAULT_RULES,
    ROOT,
    Pipeline,
    accepted_so_far,
    publish_all,
    wait_for,
    write_config,
)
from tests.servers import InfluxV1, Mosquitto

BOARDS = ROOT / "config" / "grafana" / "dashboards"
NS = 1_000_000_000
ZONE = ZoneInfo("Asia/Shanghai")
"""The plant's timezone, and the operators' browsers' (the boards' timezone is "browser")."""
SAMPLES_PER_H = 360
POTLINE = "      baseline_voltage_v: 4.25\n"  # more keys of P1: the savings split into parts
ALARMS = """\
alarms:
  - name: anode_effect  # the simulated anode effects raise and clear it
    field: cell_voltage_v
    above: anode_effect_threshold_v
    severity: critical
  - name: no_data  # longer than a published block of samples, so only SILENT goes stale
    stale_s: 3600
    severity: critical
"""
SILENT = "C099"
"""A cell that sends one sample at the start of the day, then nothing: its alarm stands."""
LIVE = ("P2", "C001")
"""A cell that sends single objects stamped now, at the end: the only live samples, which
``cell_clock`` times (the arrays are not). Of a potline of its own, so that its samples,
at the real now, make no cell of P1 stale and no alarm of P1 (the overview's test)."""
LIVE_POTLINE = "    - id: P2\n      baseline_sec_kwh_per_t: 13450\n"


class Query(NamedTuple):
    """A query of a board, with the board's range and its panel's time options."""

    board: str
    title: str
    query: str
    time: tuple[str, str]
    panel: dict[str, str]
    kind: str = ""
    """The panel's type; empty for a variable or an annotation."""
    no_value: str | None = None
    """What the panel shows when the query has no rows, if not "No data"."""


def queries() -> list[Query]:
    out = []
    for path in sorted(BOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        time = (board["time"]["from"], board["time"]["to"])
        for variable in board["templating"]["list"]:
            out.append(
                Query(path.stem, f"variable {variable['name']}", variable["query"], time, {})
            )
        for note in board["annotations"]["list"]:
            out.append(Query(path.stem, f"annotation {note['name']}", note["query"], time, {}))
        for panel in board["panels"]:
            options = {k: panel[k] for k in ("timeFrom", "timeShift") if k in panel}
            for target in panel["targets"]:
                title = f"{panel['title']} ({target['refId']})"
                no_value = panel["fieldConfig"]["defaults"].get("noValue")
                query = Query(path.stem, title, target["query"], time, options, panel["type"])
                out.append(query._replace(no_value=no_value))
    return out


def stat_queries() -> list[Query]:
    return [q for q in queries() if q.kind == "stat" and q.board != "health"]


def the_tenth() -> datetime:
    """Noon on the 10th of last month, local: mid-month, and in the past for the pipeline."""
    first = datetime.now(ZONE).replace(day=1)
    return (first - timedelta(days=1)).replace(day=10, hour=12, minute=0, second=0, microsecond=0)


class Filled(NamedTuple):
    db: str
    now: datetime
    cell: str
    """A cell with anode effects."""


@pytest.fixture(scope="module")
def filled(
    tmp_path_factory: pytest.TempPathFactory, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> Filled:
    """42 days of anode history and taps, then telemetry of the 9th and the 10th to "now"."""
    now = the_tenth()
    midnight = now.replace(hour=0)
    start = int((midnight - timedelta(days=42)).timestamp()) * NS
    now_ns = int(now.timestamp()) * NS
    sim = PotlineSim(
        "P1",
        cells=4,
        seed=5,
        start_ns=start,
        interval_s=10,
        params=SimParams(ae_rate_per_cell_day=3.0),
    )
    events = [
        (f"smelter/P1/{e.cell}/event", orjson.dumps(e.payload)) for e in sim.events(start, now_ns)
    ]
    forgotten = {
        "ts": start // 1_000_000 + 3_600_000,
        "type": "anode_change",
        "anode": 99,
        "block": "590",
    }  # never changed again: overdue
    events.insert(0, ("smelter/P1/C001/event", orjson.dumps(forgotten)))
    # telemetry from the day before: its taps close tap cycles with charge, its changes
    # settle, and the day is ranked against its median (the boards' week holds both days)
    cols = sim.columns(41 * 24 * SAMPLES_PER_H, (24 + now.hour) * SAMPLES_PER_H)
    telemetry = [
        (f"smelter/P1/{cols.cells[c]}/telemetry", body) for c, body in cols.encode(array_size=60)
    ]
    once = {"ts": int(cols.ts_ns[0]) // 1_000_000, "cell_voltage_v": 4.2, "line_current_ka": 400.0}
    telemetry.insert(0, (f"smelter/P1/{SILENT}/telemetry", orjson.dumps(once)))
    db = "boards"
    influx_v1.create_database(db)
    work = tmp_path_factory.mktemp("boards")
    pipeline = Pipeline(
        write_config(
            work,
            mqtt_port=plant_broker.port,
            influx_url=influx_v1.url,
            database=db,
            rules=DEFAULT_RULES + ALARMS,
            extra=POTLINE + LIVE_POTLINE,
        ),
        work / "cellmon.log",
    )
    pipeline.start()
    publish_all(plant_broker.port, events)
    # the history before the day: events and telemetry are two topics, and a broker keeps
    # no order between them (the day's overdue list is made when its first sample arrives)
    wait_for(lambda: accepted_so_far(work / "state") >= len(events), 60, pipeline.new_log)
    publish_all(plant_broker.port, telemetry)

    publish_all(plant_broker.port, live_samples(5))

    def done() -> bool:
        rows = influx_v1.query("SELECT count(voltage_v) FROM cell", db)
        return bool(rows) and rows[0]["count"] >= len(cols) * 4 + 1 + 5

    wait_for(done, 300, pipeline.new_log)

    def metrics_points() -> int:  # the health board's rates need a few, seconds apart
        rows = influx_v1.query('SELECT count("received") FROM "cellmon"', db)
        return rows[0]["count"] if rows else 0

    wait_for(lambda: metrics_points() >= 3, 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    effects = influx_v1.query("SELECT duration_s FROM anode_effect GROUP BY cell", db)
    assert effects, "the simulation must have anode effects for the cell board"
    assert influx_v1.query("SELECT count(*) FROM cell_1m", db), "the minute aggregates"
    assert influx_v1.query("SELECT count(*) FROM cell_clock", db), "the live cell's clock"
    return Filled(db, now, effects[0]["cell"])


def live_samples(n: int) -> list[tuple[str, bytes]]:
    """``n`` single objects of the live cell, a second apart, stamped 0.2 s before now."""
    ms = time.time_ns() // 1_000_000 - 200
    potline, cell = LIVE
    return [
        (
            f"smelter/{potline}/{cell}/telemetry",
            orjson.dumps(
                {"ts": ms - (n - k) * 1000, "cell_voltage_v": 4.2, "line_current_ka": 400.0}
            ),
        )
        for k in range(n)
    ]


@pytest.fixture(scope="module")
def morning(
    tmp_path_factory: pytest.TempPathFactory, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> Filled:
    """A potline day with its changes, taps and effects, then the next day's first minute."""
    now = the_tenth().replace(day=11, hour=0, minute=1)
    start = int((now - timedelta(days=1, minutes=1)).timestamp()) * NS
    params = SimParams(ae_rate_per_cell_day=3.0)
    sim = PotlineSim("P1", cells=4, seed=7, start_ns=start, interval_s=60, params=params)
    midnight_ns = start + 24 * 3600 * NS
    events = [
        (f"smelter/P1/{e.cell}/event", orjson.dumps(e.payload))
        for e in sim.events(start, midnight_ns)
    ]
    assert any(b'"anode_change"' in body for _, body in events), "a day with changes"
    cols = sim.columns(0, 24 * 60 + 2)  # to 00:01 of the next day
    telemetry = [
        (f"smelter/P1/{cols.cells[c]}/telemetry", body) for c, body in cols.encode(array_size=60)
    ]
    db = "morning"
    influx_v1.create_database(db)
    work = tmp_path_factory.mktemp("morning")
    config = write_config(
        work, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=db, extra=POTLINE
    )
    pipeline = Pipeline(config, work / "cellmon.log")
    pipeline.start()
    publish_all(plant_broker.port, events)
    publish_all(plant_broker.port, telemetry)

    def done() -> bool:
        rows = influx_v1.query("SELECT count(voltage_v) FROM cell", db)
        return bool(rows) and rows[0]["count"] >= len(cols) * 4

    wait_for(done, 300, pipeline.new_log)
    assert pipeline.terminate() == 0
    return Filled(db, now, "C001")


@pytest.mark.integration
@pytest.mark.parametrize("q", stat_queries(), ids=[f"{q.board}:{q.title}" for q in stat_queries()])
def test_stat_has_a_row_from_the_first_minute_of_its_period(
    morning: Filled, influx_v1: InfluxV1, q: Query
) -> None:
    """At 00:01 after a day of changes and effects, "today" reads zeros, never "No data".

    A count of standing alarms has no rows when none stands (InfluxQL counts no series):
    such a panel says what it shows then.
    """
    concrete = substitute(q, morning)
    rows = influx_v1.query(concrete, morning.db)
    if not rows and q.no_value == "0" and "count(" in q.query:
        return
    assert rows, f"{q.board} / {q.title}: no rows one minute into the day: {concrete}"
    empty = [column for column in rows[0] if all(r[column] is None for r in rows)]
    assert not empty, f"{q.board} / {q.title}: no values of {empty} for {concrete}"


@pytest.mark.integration
@pytest.mark.parametrize("q", queries(), ids=[f"{q.board}:{q.title}" for q in queries()])
def test_panel_query_returns_rows(filled: Filled, influx_v1: InfluxV1, q: Query) -> None:
    """Every column the query selects has a value within the panel's range."""
    concrete = substitute(q, filled)
    rows = influx_v1.query(concrete, filled.db)
    assert rows, f"{q.board} / {q.title}: no rows for {concrete}"
    empty = [column for column in rows[0] if all(r[column] is None for r in rows)]
    assert not empty, f"{q.board} / {q.title}: no values of {empty} for {concrete}"


def substitute(q: Query, filled: Filled) -> str:
    """The query as Grafana sends it at the board's now, for potline P1 and the cell.

    The health board shows the pipeline's own metrics, stamped by the clock of this run, so its
    now is the clock's; the others show the data, whose now is the 10th.
    """
    now = datetime.now(ZONE) if q.board == "health" else filled.now
    start, end = panel_range(q.time, q.panel, now)
    concrete = (
        q.query.replace("$timeFilter", time_filter(start, end))
        .replace("$__interval", "1s" if q.board == "health" else "10m")  # the run took seconds
        .replace("$potline", "P1")
        .replace("$cell", filled.cell)
    )
    assert not re.search(r"\$\w", concrete), f"a variable or macro left: {concrete}"
    return concrete


@pytest.mark.integration
def test_overview_shows_the_alarms_left_raised(filled: Filled, influx_v1: InfluxV1) -> None:
    """The overview's standing alarms are those whose last transition in the raw points raised
    them; the silent cell's among them, raised an hour after its only sample."""
    db = filled.db
    points = influx_v1.query('SELECT * FROM "alarm" WHERE "potline" = \'P1\' GROUP BY *', db)
    last: dict[tuple[str, str, str], dict] = {}
    for p in sorted(points, key=lambda p: p["time"]):
        last[(p["cell"], p["rule"], p["severity"])] = p
    standing = {key: p for key, p in last.items() if p["state"] == "raised"}
    silent = standing[(SILENT, "no_data", "critical")]
    first = influx_v1.query(
        f'SELECT first("voltage_v") FROM "cell" WHERE "cell" = \'{SILENT}\'', db
    )
    assert (silent["time"], silent["value"]) == (first[0]["time"] + 3600 * NS, 3600.0)

    overview = {q.title: q for q in queries() if q.board == "overview"}

    def run(title: str) -> list[dict[str, Any]]:
        return influx_v1.query(substitute(overview[f"{title} (A)"], filled), db)

    shown = {  # what the table keeps after its filter on state
        (r["cell"], r["rule"], r["severity"]): (r["time"], r["value"])
        for r in run("Cells in alarm")
        if r["state"] == "raised"
    }
    assert shown == {key: (p["time"], p["value"]) for key, p in standing.items()}
    assert [r["alarms"] for r in run("Alarms standing")] == [len(standing)]
