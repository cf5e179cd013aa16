"""Anode changes and anode effects through the whole pipeline: 42 simulated days of anode
history and a day of telemetry over real Mosquitto and InfluxDB 1.x, against values
worked out here from the published events and samples."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from simulator.parameters import SimParams
from simulator.payloads import Columns, PotlineSim, SimEvent
from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
DAY = 86_400 * NS
CELLS = 4
DAYS = 42
INTERVAL_S = 10
TARGET_DAYS, TOLERANCE_DAYS = 31.0, 1.0


def local_midnight(days_ago: int) -> int:
    d = datetime.now(ZONE).date() - timedelta(days=days_ago)
    return int(datetime(d.year, d.month, d.day, tzinfo=ZONE).timestamp()) * NS


START = local_midnight(DAYS + 1)
TELEMETRY_START = START + (DAYS - 1) * DAY


@pytest.fixture(scope="module")
def sim() -> PotlineSim:
    params = SimParams(ae_rate_per_cell_day=3.0)  # a handful of anode effects in a day
    return PotlineSim(
        "P1", cells=CELLS, seed=21, start_ns=START, interval_s=INTERVAL_S, params=params
    )


@pytest.fixture(scope="module")
def history(sim: PotlineSim) -> list[SimEvent]:
    return sim.events(START, START + DAYS * DAY)


@pytest.fixture(scope="module")
def telemetry(sim: PotlineSim) -> Columns:
    k0 = (TELEMETRY_START - START) // (INTERVAL_S * NS)
    return sim.columns(int(k0), DAY // (INTERVAL_S * NS))


@pytest.fixture(scope="module")
def influx_after_run(
    tmp_path_factory: pytest.TempPathFactory,
    plant_broker: Mosquitto,
    influx_v1: InfluxV1,
    history: list[SimEvent],
    telemetry: Columns,
) -> str:
    db = "anodes"
    influx_v1.create_database(db)
    work = tmp_path_factory.mktemp("anodes")
    config = write_config(work, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=db)
    pipeline = Pipeline(config, work / "cellmon.log")
    pipeline.start()
    publish_all(
        plant_broker.port,
        [(f"smelter/P1/{e.cell}/event", orjson.dumps(e.payload)) for e in history],
    )
    publish_all(
        plant_broker.port,
        [
            (f"smelter/P1/{telemetry.cells[c]}/telemetry", body)
            for c, body in telemetry.encode(array_size=60)
        ],
    )
    total = len(telemetry) * CELLS

    def done() -> bool:
        rows = influx_v1.query("SELECT count(voltage_v) FROM cell", db)
        return bool(rows) and rows[0]["count"] >= total

    wait_for(done, 300, pipeline.new_log)
    assert pipeline.terminate() == 0
    return db


def changes(history: list[SimEvent]) -> list[SimEvent]:
    return [e for e in history if e.payload["type"] == "anode_change"]


def test_anode_change_points(
    influx_after_run: str, influx_v1: InfluxV1, history: list[SimEvent]
) -> None:
    rows = influx_v1.query("SELECT * FROM anode_change GROUP BY *", influx_after_run)
    got = {(r["cell"], r["anode"], r["time"]): r for r in rows}
    previous: dict[tuple[str, int], int] = {}
    assert len(got) == len(changes(history))
    for e in changes(history):
        anode = e.payload["anode"]
        r = got[(e.cell, str(anode), e.ts_ns)]
        assert r["block"] == e.payload["block"]
        before = previous.get((e.cell, anode))
        previous[(e.cell, anode)] = e.ts_ns
        if before is None:
            assert r.get("cycle_days") is None
            continue
        cycle = (e.ts_ns - before) / DAY
        assert r["cycle_days"] == pytest.approx(cycle, rel=1e-9)
        assert r["target_days"] == TARGET_DAYS
        assert r["deviation_days"] == pytest.approx(cycle - TARGET_DAYS, abs=1e-9)
        assert r["on_target"] == (abs(cycle - TARGET_DAYS) <= TOLERANCE_DAYS)


def test_anode_potline_by_day(
    influx_after_run: str, influx_v1: InfluxV1, history: list[SimEvent]
) -> None:
    per_day: dict[int, list[tuple[float | None, str]]] = defaultdict(list)
    previous: dict[tuple[str, int], int] = {}
    for e in changes(history):
        key = (e.cell, e.payload["anode"])
        cycle = (e.ts_ns - previous[key]) / DAY if key in previous else None
        previous[key] = e.ts_ns
        day_start = START + (e.ts_ns - START) // DAY * DAY  # UTC+8 all year: days are 24 h
        per_day[day_start].append((cycle, e.payload["block"]))
    rows = influx_v1.query("SELECT * FROM anode_potline WHERE period = 'day'", influx_after_run)
    got = {r["time"]: r for r in rows}
    assert set(got) == set(per_day)
    for day, items in per_day.items():
        r = got[day]
        known = [c for c, _ in items if c is not None]
        assert r["changes"] == len(items)
        assert r["target_block_share_pct"] == pytest.approx(
            100 * sum(b == "590" for _, b in items) / len(items)
        )
        if known:
            assert r["mean_cycle_days"] == pytest.approx(sum(known) / len(known))
            assert r["on_target_pct"] == pytest.approx(
                100 * sum(abs(c - TARGET_DAYS) <= TOLERANCE_DAYS for c in known) / len(known)
            )


def effects(telemetry: Columns) -> list[tuple[str, int, float, float]]:
    """(cell, start, duration s, peak V): above 8 V from the first sample over to the first
    sample at or below."""
    out = []
    t = telemetry.ts_ns
    for c, cell in enumerate(telemetry.cells):
        above = telemetry.cell_voltage_v[:, c] > 8.0
        k = 0
        while k < len(t):
            if not above[k]:
                k += 1
                continue
            j = k
            while j < len(t) and above[j]:
                j += 1
            if j < len(t):  # ended inside the data
                peak = float(np.max(telemetry.cell_voltage_v[k:j, c]))
                out.append((cell, int(t[k]), (int(t[j]) - int(t[k])) / NS, peak))
            k = j
    return out


def test_anode_effects_and_pfc(
    influx_after_run: str, influx_v1: InfluxV1, telemetry: Columns
) -> None:
    want = effects(telemetry)
    assert len(want) >= 3
    rows = influx_v1.query("SELECT * FROM anode_effect GROUP BY *", influx_after_run)
    got = {(r["cell"], r["time"]): r for r in rows}
    assert set(got) == {(cell, start) for cell, start, _, _ in want}
    for cell, start, duration, peak in want:
        assert got[(cell, start)]["duration_s"] == pytest.approx(duration)
        assert got[(cell, start)]["peak_v"] == pytest.approx(peak)

    day = influx_v1.query(
        f"SELECT * FROM ae_potline WHERE period = 'day' AND time = {TELEMETRY_START}",
        influx_after_run,
    )[0]
    minutes = sum(d for _, _, d, _ in want) / 60
    cell_days = CELLS * 1.0
    t = telemetry.ts_ns
    dt_h = np.diff(t) / NS / 3600
    charge = (
        float(np.sum((telemetry.line_current_ka[:-1] + telemetry.line_current_ka[1:]) / 2 * dt_h))
        * CELLS
    )
    metal_t = 0.33557e-3 * charge * 0.925
    aem = minutes / cell_days
    cf4 = 0.143 * aem * metal_t
    c2f6 = cf4 * 0.121
    assert day["count"] == len(want)
    assert day["minutes"] == pytest.approx(minutes)
    assert day["aef_per_cell_day"] == pytest.approx(len(want) / cell_days)
    assert day["ae_min_per_cell_day"] == pytest.approx(aem)
    assert day["cf4_kg"] == pytest.approx(cf4, rel=1e-6)
    assert day["c2f6_kg"] == pytest.approx(c2f6, rel=1e-6)
    assert day["co2e_t"] == pytest.approx((cf4 * 6630 + c2f6 * 11100) / 1000, rel=1e-6)


def test_sigkill_after_an_anode_change_keeps_the_history(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=influx_db
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    first = START + DAY // 3
    second = first + int(30.5 * DAY)

    def change(ts: int) -> list[tuple[str, bytes]]:
        body = {"ts": ts // 1_000_000, "type": "anode_change", "anode": 7, "block": "590"}
        return [("smelter/P1/C001/event", orjson.dumps(body))]

    def points() -> list[dict]:
        return influx_v1.query("SELECT * FROM anode_change", influx_db)

    pipeline.start()
    publish_all(plant_broker.port, change(first))
    wait_for(lambda: len(points()) == 1, 60, pipeline.new_log)
    pipeline.kill()
    pipeline.start()
    publish_all(plant_broker.port, change(second))
    wait_for(lambda: len(points()) == 2, 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    latest = max(points(), key=lambda r: r["time"])
    assert latest["cycle_days"] == pytest.approx(30.5)
