"""A backfill while the live instance runs (contract 5.2), through real Mosquitto and InfluxDB.

A live day of three cells at constant voltage and current, with an hour of cell C2 missing;
then that hour replayed from a CSV with the deployment's own config. Every expected value
is the trapezoid rule worked out by hand: at constant U and I over covered time h,
energy = U·I·h and charge = I·h, and a gap longer than ``max_gap_s`` covers nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.end_to_end.three_cells import (
    CE,
    CURRENT_KA,
    FARADAY,
    HOUR_10,
    LAST,
    MIDNIGHT,
    NS,
    STEP_S,
    T0,
    VOLTS,
    energy,
    sec,
)
from tests.harness import Pipeline, publish_all, replay, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

GAP = HOUR_10  # C2's samples from 10:00:00 to 10:59:30


def sample(cell: str, k: int) -> dict[str, object]:
    return {
        "ts": (T0 + k * STEP_S * NS) // 1_000_000,
        "cell_voltage_v": VOLTS[cell],
        "line_current_ka": CURRENT_KA,
    }


def live_messages(steps: range) -> list[tuple[str, bytes]]:
    return [
        (f"smelter/P1/{cell}/telemetry", json.dumps(sample(cell, k)).encode())
        for k in steps
        for cell in VOLTS
        if not (cell == "C2" and k in GAP)
    ]


def kpi_points(influx: InfluxV1, db: str) -> dict[tuple[object, ...], dict[str, object]]:
    """Every KPI point, by measurement, tags and time."""
    out = {}
    for m in ("sec_cell", "sec_potline", "ae_potline", "anode_potline"):
        for r in influx.query(f"SELECT * FROM {m} GROUP BY *", db):
            out[(m, r.get("cell"), r["period"], r["time"])] = r
    return out


def test_a_replayed_hour_makes_the_kpis_those_of_the_whole_day(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=influx_db
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    publish_all(plant_broker.port, live_messages(range(LAST + 1)))
    shift = T0 + 8 * 3600 * NS  # 08:00 to 16:00 holds the gap
    wait_for(lambda: sec(influx_v1, influx_db, "C2", "day", T0).get("complete"), 120)

    # live: the gap from 09:59:30 to 11:00:00 is longer than max_gap_s and covers nothing
    covered_h = (86_400 - 3_630) / 3600
    before = kpi_points(influx_v1, influx_db)
    assert before[("sec_cell", "C2", "day", T0)]["energy_kwh"] == pytest.approx(
        energy("C2", covered_h), rel=1e-9
    )

    history = tmp_path / "gap.csv"
    pd.DataFrame([{"potline": "P1", "cell": "C2", **sample("C2", k)} for k in GAP]).to_csv(
        history, index=False
    )
    done = replay(history, config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rewrote P1" in done.stdout

    def whole_day() -> bool:
        got = sec(influx_v1, influx_db, "C2", "day", T0).get("energy_kwh", 0.0)
        return got == pytest.approx(energy("C2", 24), rel=1e-9)

    wait_for(whole_day, 60, pipeline.new_log)
    after = kpi_points(influx_v1, influx_db)
    for period, start, hours in (("shift", shift, 8.0), ("day", T0, 24.0)):
        point = after[("sec_cell", "C2", period, start)]
        aluminium = FARADAY * CURRENT_KA * hours * CE
        assert point["energy_kwh"] == pytest.approx(energy("C2", hours), rel=1e-9)
        assert point["aluminium_t"] == pytest.approx(aluminium, rel=1e-9)
        assert point["hours_covered"] == pytest.approx(hours, rel=1e-9)
        assert point["sec_kwh_per_t"] == pytest.approx(4.2 / (FARADAY * CE), rel=1e-9)
        assert point["complete"] is True
    potline_day = after[("sec_potline", None, "day", T0)]
    assert potline_day["energy_kwh"] == pytest.approx(sum(energy(c, 24) for c in VOLTS), rel=1e-9)
    month = MIDNIGHT.replace(day=1)
    month_t = int(month.timestamp()) * NS
    month_h = 24 + STEP_S / 3600  # and the next day's first 30 s
    assert after[("sec_cell", "C2", "month", month_t)]["energy_kwh"] == pytest.approx(
        energy("C2", month_h), rel=1e-9
    )
    for key, point in before.items():
        if key[0] == "sec_cell" and key[1] != "C2":
            assert after[key] == point, key  # other cells' points are untouched

    again = replay(history, config)
    assert again.returncode == 0, again.stdout + again.stderr
    assert kpi_points(influx_v1, influx_db) == after

    # live goes on into the next day, then stops: its last write of the month (at the
    # flush) continues from the backfilled totals instead of undoing them
    publish_all(plant_broker.port, live_messages(range(LAST + 1, LAST + 11)))
    newest = T0 + (LAST + 10) * STEP_S * NS  # its raw points written: the worker has them all
    raw = f"SELECT count(voltage_v) FROM cell WHERE time = {newest}"
    wait_for(lambda: [r["count"] for r in influx_v1.query(raw, influx_db)] == [3], 60)
    assert pipeline.terminate() == 0  # SIGTERM stops taking messages: the rest wait unseen
    extra_h = 10 * STEP_S / 3600
    final = sec(influx_v1, influx_db, "C2", "month", month_t)
    assert final["energy_kwh"] == pytest.approx(energy("C2", month_h + extra_h), rel=1e-9)
