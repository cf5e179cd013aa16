"""Every query of every panel of every board runs against InfluxDB 1.x filled by the real
pipeline, and returns rows; the committed JSON is what scripts/build_dashboards.py makes."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from simulator.parameters import SimParams
from simulator.payloads import PotlineSim
from tests.harness import DEFAULT_RULES, ROOT, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

BOARDS = ROOT / "config" / "grafana" / "dashboards"
NS = 1_000_000_000
DAY = 86_400 * NS
ZONE = ZoneInfo("Asia/Shanghai")
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


def builder():  # a module loaded from its path
    spec = importlib.util.spec_from_file_location("build", ROOT / "scripts" / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_boards_are_what_the_script_builds() -> None:
    built = builder().render()
    assert sorted(built) == sorted(p.name for p in BOARDS.glob("*.json"))
    for name, text in built.items():
        assert (BOARDS / name).read_text() == text, f"run scripts/build_dashboards.py ({name})"


def queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(BOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for variable in board["templating"]["list"]:
            out.append((path.stem, f"variable {variable['name']}", variable["query"]))
        for note in board["annotations"]["list"]:
            out.append((path.stem, f"annotation {note['name']}", note["query"]))
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((path.stem, panel["title"], target["query"]))
    return out


@pytest.fixture(scope="module")
def filled(
    tmp_path_factory: pytest.TempPathFactory, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> tuple[str, int, int, str]:
    """42 days of anode history, a day of telemetry; (database, from, to, a cell with AEs)."""
    d = datetime.now(ZONE).date() - timedelta(days=43)
    start = int(datetime(d.year, d.month, d.day, tzinfo=ZONE).timestamp()) * NS
    sim = PotlineSim(
        "P1",
        cells=4,
        seed=5,
        start_ns=start,
        interval_s=10,
        params=SimParams(ae_rate_per_cell_day=3.0),
    )
    events = [
        (f"smelter/P1/{e.cell}/event", orjson.dumps(e.payload))
        for e in sim.events(start, start + 42 * DAY)
    ]
    forgotten = {
        "ts": start // 1_000_000 + 3_600_000,
        "type": "anode_change",
        "anode": 99,
        "block": "590",
    }  # never changed again: overdue
    events.insert(0, ("smelter/P1/C001/event", orjson.dumps(forgotten)))
    cols = sim.columns(41 * 8640, 8640)
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
        ),
        work / "cellmon.log",
    )
    pipeline.start()
    publish_all(plant_broker.port, events)
    publish_all(plant_broker.port, telemetry)

    def done() -> bool:
        rows = influx_v1.query("SELECT count(voltage_v) FROM cell", db)
        return bool(rows) and rows[0]["count"] >= len(cols) * 4 + 1

    wait_for(done, 300, pipeline.new_log)

    def metrics_points() -> int:  # the health board's rates need a few, seconds apart
        rows = influx_v1.query('SELECT count("received") FROM "cellmon"', db)
        return rows[0]["count"] if rows else 0

    wait_for(lambda: metrics_points() >= 3, 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    effects = influx_v1.query("SELECT duration_s FROM anode_effect GROUP BY cell", db)
    assert effects, "the simulation must have anode effects for the cell board"
    # the range ends now at the earliest, as a board's does: the self-metrics are from now
    end = max(int(cols.ts_ns[-1]) + DAY, time.time_ns())
    return db, start, end, effects[0]["cell"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("board", "title", "query"), queries(), ids=[f"{b}:{t}" for b, t, _ in queries()]
)
def test_panel_query_returns_rows(
    filled: tuple[str, int, int, str], influx_v1: InfluxV1, board: str, title: str, query: str
) -> None:
    db, t0, t1, cell = filled
    concrete = substitute(query, board, t0, t1, cell)
    assert influx_v1.query(concrete, db), f"{board} / {title}: no rows for {concrete}"


def substitute(query: str, board: str, t0: int, t1: int, cell: str) -> str:
    """The query as Grafana sends it for the range t0..t1, potline P1 and the cell."""
    concrete = (
        query.replace("$timeFilter", f"time >= {t0} AND time <= {t1}")
        .replace("$__interval", "1s" if board == "health" else "10m")  # the run took seconds
        .replace("$potline", "P1")
        .replace("$cell", cell)
    )
    assert not re.search(r"\$\w", concrete), f"a variable or macro left: {concrete}"
    return concrete


@pytest.mark.integration
def test_overview_shows_the_alarms_left_raised(
    filled: tuple[str, int, int, str], influx_v1: InfluxV1
) -> None:
    """The overview's standing alarms are those whose last transition in the raw points raised
    them; the silent cell's among them, raised an hour after its only sample."""
    db, t0, t1, cell = filled
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

    overview = {
        panel["title"]: panel["targets"][0]["query"]
        for panel in json.loads((BOARDS / "overview.json").read_text())["panels"]
    }

    def run(title: str) -> list[dict]:
        return influx_v1.query(substitute(overview[title], "overview", t0, t1, cell), db)

    shown = {  # what the table keeps after its filter on state
        (r["cell"], r["rule"], r["severity"]): (r["time"], r["value"])
        for r in run("Cells in alarm")
        if r["state"] == "raised"
    }
    assert shown == {key: (p["time"], p["value"]) for key, p in standing.items()}
    assert [r["alarms"] for r in run("Alarms standing")] == [len(standing)]
