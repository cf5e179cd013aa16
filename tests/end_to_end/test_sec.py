"""kWh/t through the whole pipeline: two simulated days of a potline over real Mosquitto
and InfluxDB 1.x, checked against an independent recomputation from the published samples.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from simulator.payloads import Columns, PotlineSim
from tests.harness import ROOT, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
CELLS = 6
INTERVAL_S = 10
STEPS = 2 * 86_400 // INTERVAL_S
CE = 0.925  # write_config's potline P1 keeps the default current efficiency
FARADAY = 0.33557e-3


def local_midnight(days_ago: int) -> datetime:
    today = datetime.now(ZONE).date() - timedelta(days=days_ago)
    return datetime(today.year, today.month, today.day, tzinfo=ZONE)


START = local_midnight(3)


def periods() -> dict[str, list[tuple[int, int]]]:
    """Shift, day and month [start, end) in UTC ns, worked out from the local calendar."""
    ns = lambda dt: int(dt.timestamp()) * NS  # noqa: E731 - a one-line helper of this test
    days = [START + timedelta(days=k) for k in range(3)]
    shifts = [d + timedelta(hours=h) for d in days for h in (0, 8, 16)] + [days[-1]]
    month0 = START.replace(day=1)
    month1 = (month0 + timedelta(days=32)).replace(day=1)
    month2 = (month1 + timedelta(days=32)).replace(day=1)
    pairs = lambda xs: [(ns(a), ns(b)) for a, b in itertools.pairwise(xs)]  # noqa: E731 - a one-line helper of this test
    return {
        "shift": pairs(sorted(set(shifts))),
        "day": pairs(days),
        "month": pairs([month0, month1, month2]),
    }


def expected(cols: Columns) -> dict[tuple[str, str, int], tuple[float, float, float]]:
    """(cell or "*", period, start) → (energy kWh, charge kA·h, covered h), by trapezoids."""
    t = cols.ts_ns
    out: dict[tuple[str, str, int], tuple[float, float, float]] = {}
    for kind, spans in periods().items():
        for start, end in spans:
            inside = (t[:-1] >= start) & (t[1:] <= end)  # no interval crosses a boundary
            if not inside.any():
                continue
            dt_h = (t[1:] - t[:-1])[inside] / NS / 3600
            i0, i1 = cols.line_current_ka[:-1][inside], cols.line_current_ka[1:][inside]
            for c, cell in enumerate(cols.cells):
                u0, u1 = cols.cell_voltage_v[:-1, c][inside], cols.cell_voltage_v[1:, c][inside]
                energy = float(np.sum((u0 * i0 + u1 * i1) / 2 * dt_h))
                charge = float(np.sum((i0 + i1) / 2 * dt_h))
                out[(cell, kind, start)] = (energy, charge, float(dt_h.sum()))
    return out


@pytest.fixture(scope="module")
def simulated() -> Columns:
    sim = PotlineSim(
        "P1", cells=CELLS, seed=11, start_ns=int(START.timestamp()) * NS, interval_s=INTERVAL_S
    )
    return sim.columns(0, STEPS)


@pytest.fixture(scope="module")
def live_db(
    tmp_path_factory: pytest.TempPathFactory,
    plant_broker: Mosquitto,
    influx_v1: InfluxV1,
    simulated: Columns,
) -> str:
    """The two days published over MQTT to ``cellmon run``; the database it wrote."""
    db = "sec_live"
    influx_v1.create_database(db)
    tmp_path = tmp_path_factory.mktemp("sec-live")
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=db
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    messages = [
        (f"smelter/P1/{simulated.cells[c]}/telemetry", body)
        for c, body in simulated.encode(array_size=60)
    ]
    publish_all(plant_broker.port, messages)
    wait_for(lambda: written(influx_v1, db) >= STEPS * CELLS, 300, pipeline.new_log)
    assert pipeline.terminate() == 0  # flushes the open periods
    return db


def written(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return rows[0]["count"] if rows else 0


def kpis(influx: InfluxV1, db: str, measurement: str) -> dict[tuple, dict]:
    rows = influx.query(f"SELECT * FROM {measurement} GROUP BY *", db)
    return {(r.get("cell"), r["period"], r["time"]): r for r in rows}


def test_sec_points_match_an_independent_recomputation(
    live_db: str, influx_v1: InfluxV1, simulated: Columns
) -> None:
    influx_db = live_db
    want = expected(simulated)
    got = influx_v1.query("SELECT * FROM sec_cell GROUP BY cell, period", influx_db)
    assert {(r["cell"], r["period"], r["time"]) for r in got} == set(want)
    for r in got:
        energy, charge, hours = want[(r["cell"], r["period"], r["time"])]
        metal = FARADAY * charge * CE
        assert r["energy_kwh"] == pytest.approx(energy, rel=1e-4)
        assert r["aluminium_t"] == pytest.approx(metal, rel=1e-4)
        assert r["sec_kwh_per_t"] == pytest.approx(energy / metal, rel=1e-4)
        assert r["hours_covered"] == pytest.approx(hours, rel=1e-4)
        assert r["savings_kwh_per_t"] == pytest.approx(13450 - energy / metal, rel=1e-4)

    potline = influx_v1.query("SELECT * FROM sec_potline GROUP BY period", influx_db)
    assert {(r["period"], r["time"]) for r in potline} == {(k, s) for (_, k, s) in want}
    for r in potline:
        parts = [want[(cell, r["period"], r["time"])] for cell in simulated.cells]
        energy = sum(p[0] for p in parts)
        metal = FARADAY * sum(p[1] for p in parts) * CE
        assert r["cells"] == CELLS
        assert r["energy_kwh"] == pytest.approx(energy, rel=1e-4)
        assert r["sec_kwh_per_t"] == pytest.approx(energy / metal, rel=1e-4)

    ends = {(kind, s): e for kind, spans in periods().items() for s, e in spans}
    data_end = int(simulated.ts_ns[-1])
    for r in got + potline:
        # every period the data passed is complete; the ones the data ended in are not
        assert r["complete"] == (data_end >= ends[(r["period"], r["time"])]), r


def test_replay_of_the_same_days_gives_identical_kpi_points(
    tmp_path: Path, live_db: str, influx_v1: InfluxV1, simulated: Columns
) -> None:
    rows = [
        {
            "potline": "P1",
            "cell": cell,
            "ts": int(t) // 1_000_000,
            "cell_voltage_v": simulated.cell_voltage_v[k, c],
            "line_current_ka": simulated.line_current_ka[k],
            "bath_temp_c": simulated.bath_temp_c[k, c],
            "noise_uohm": simulated.noise_uohm[k, c],
        }
        for k, t in enumerate(simulated.ts_ns.tolist())
        for c, cell in enumerate(simulated.cells)
    ]
    history = tmp_path / "history.csv"
    pd.DataFrame(rows).to_csv(history, index=False)
    db = "sec_replay"
    influx_v1.create_database(db)
    config = write_config(tmp_path / "replay", mqtt_port=1, influx_url=influx_v1.url, database=db)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.commands.cli",
            "replay",
            str(history),
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "replay-state"),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert written(influx_v1, db) == STEPS * CELLS
    for measurement in ("sec_cell", "sec_potline"):
        live, replayed = kpis(influx_v1, live_db, measurement), kpis(influx_v1, db, measurement)
        assert set(replayed) == set(live)
        for key, point in live.items():
            other = replayed[key]
            assert set(other) == set(point)
            for name, value in point.items():
                if isinstance(value, float):  # sums over other batch boundaries
                    assert other[name] == pytest.approx(value, rel=1e-9), (key, name)
                else:
                    assert other[name] == value, (key, name)
