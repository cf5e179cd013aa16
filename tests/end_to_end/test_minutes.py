"""``cell_1m`` through the whole pipeline: three cells for ten minutes at 1 to 2 Hz over real
Mosquitto and InfluxDB 1.x, each minute compared with what InfluxQL's ``GROUP BY time(1m)``
makes of the raw ``cell`` points the same run wrote.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from tests.harness import Pipeline, publish_all, replay, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

NS = 1_000_000_000
CLI = (sys.executable, "-m", "collector.commands.cli")
MS = 1_000_000
MINUTES = 10
# cell → sample step in ms: 1 Hz, 2 Hz, and an irregular ~1.4 Hz that cuts minutes anywhere
STEPS_MS = {"C1": 1000, "C2": 500, "C3": 700}
# a whole hour a day ago: Asia/Shanghai (write_config's zone) minutes are UTC minutes
START_NS = (time.time_ns() // NS - 86_400) // 3600 * 3600 * NS
END_NS = START_NS + MINUTES * 60 * NS


def telemetry(seed: int = 5) -> dict[str, list[dict[str, float | int]]]:
    """Each cell's samples: varying voltage with a few excursions.

    C1 sends noise every third second of its even minutes only, so its mean is over the
    samples that sent it, and a minute without any has none.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, float | int]]] = {}
    for cell, step_ms in STEPS_MS.items():
        ts_ms = np.arange(START_NS // MS, END_NS // MS, step_ms)
        voltage = 4.1 + rng.normal(0.0, 0.05, len(ts_ms))
        voltage[rng.random(len(ts_ms)) < 0.01] = 9.5  # an odd spike: min and max must see it
        current = 300.0 + rng.normal(0.0, 1.5, len(ts_ms))
        rows: list[dict[str, float | int]] = []
        for t, u, i in zip(ts_ms.tolist(), voltage.tolist(), current.tolist(), strict=True):
            row: dict[str, float | int] = {"ts": t, "cell_voltage_v": u, "line_current_ka": i}
            even_minute = (t * MS - START_NS) // (60 * NS) % 2 == 0
            if cell == "C1" and even_minute and t // 1000 % 3 == 0:  # every 3rd second
                row["noise_uohm"] = float(rng.uniform(1.0, 20.0))
            rows.append(row)
        out[cell] = rows
    return out


def messages(data: dict[str, list[dict[str, float | int]]]) -> list[tuple[str, bytes]]:
    """Arrays of 50 samples per message, the cells' messages interleaved."""
    chunks = {c: [rows[k : k + 50] for k in range(0, len(rows), 50)] for c, rows in data.items()}
    longest = max(len(v) for v in chunks.values())
    return [
        (f"smelter/P1/{cell}/telemetry", orjson.dumps(parts[k]))
        for k in range(longest)
        for cell, parts in chunks.items()
        if k < len(parts)
    ]


def raw_count(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return int(rows[0]["count"]) if rows else 0


def withheld(row: dict[str, float | int], cell: str) -> bool:
    """C2's every third sample of minutes 3 to 5: held back from live, then replayed."""
    minute = (int(row["ts"]) * MS - START_NS) // (60 * NS)
    return cell == "C2" and 3 <= minute <= 5 and int(row["ts"]) // 500 % 3 == 0


def start_pipeline(tmp_path: Path, mosquitto: Mosquitto, influx: InfluxV1, db: str) -> Pipeline:
    config = write_config(tmp_path, mqtt_port=mosquitto.port, influx_url=influx.url, database=db)
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    return pipeline


def test_cell_1m_equals_influxql_over_the_raw_points(
    tmp_path: Path, mosquitto: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    data = telemetry()
    total = sum(len(rows) for rows in data.values())
    pipeline = start_pipeline(tmp_path, mosquitto, influx_v1, influx_db)
    publish_all(mosquitto.port, messages(data))
    wait_for(lambda: raw_count(influx_v1, influx_db) >= total, 60, pipeline.new_log)
    assert pipeline.terminate() == 0  # flush writes each cell's last minute
    assert_minutes_match_raw(influx_v1, influx_db, total)


def test_a_replay_into_live_minutes_rewrites_them_from_all_their_samples(
    tmp_path: Path, mosquitto: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    """Live lacks a third of C2's samples in three minutes; a replay of them fills the minutes.

    Live wrote those minutes from two thirds of their samples; the replay's recalculation
    rewrites them from the database's raw points, live and replayed together.
    """
    data = telemetry()
    total = sum(len(rows) for rows in data.values())
    live = {c: [r for r in rows if not withheld(r, c)] for c, rows in data.items()}
    held = [{"potline": "P1", "cell": "C2", **r} for r in data["C2"] if withheld(r, "C2")]
    pipeline = start_pipeline(tmp_path, mosquitto, influx_v1, influx_db)
    publish_all(mosquitto.port, messages(live))
    wait_for(lambda: raw_count(influx_v1, influx_db) >= total - len(held), 60, pipeline.new_log)
    wait_for(lambda: minute_samples(influx_v1, influx_db) > 0, 60, pipeline.new_log)
    history = tmp_path / "held.csv"
    pd.DataFrame(held).to_csv(history, index=False)
    done = replay(history, tmp_path / "cellmon.yaml", timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pipeline.terminate() == 0
    assert raw_count(influx_v1, influx_db) == total
    assert_minutes_match_raw(influx_v1, influx_db, total)


def minute_samples(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT sum(samples) FROM cell_1m", db)
    return int(rows[0]["sum"]) if rows else 0


def assert_minutes_match_raw(influx: InfluxV1, db: str, total: int) -> None:
    """Every minute of ``cell_1m`` is what ``GROUP BY time(1m)`` makes of ``cell``."""
    window = f"time >= {START_NS} AND time < {END_NS}"
    raw = influx.query(
        "SELECT mean(voltage_v), min(voltage_v), max(voltage_v), mean(current_ka), "
        f"count(voltage_v), mean(noise_uohm) FROM cell WHERE {window} "
        "GROUP BY time(1m), cell fill(none)",
        db,
    )
    want = {(r["cell"], r["time"]): r for r in raw}
    got = {(r["cell"], r["time"]): r for r in influx.query("SELECT * FROM cell_1m", db)}
    minutes = {START_NS + k * 60 * NS for k in range(MINUTES)}
    assert set(want) == {(c, t) for c in STEPS_MS for t in minutes}  # the data is all there
    assert set(got) == set(want)
    assert sum(r["samples"] for r in got.values()) == total
    for key, r in want.items():
        m = got[key]
        assert m["samples"] == r["count"], key
        assert m["voltage_v_min"] == r["min"], key
        assert m["voltage_v_max"] == r["max"], key
        assert m["voltage_v_mean"] == pytest.approx(r["mean"], rel=1e-12, abs=0), key
        assert m["current_ka_mean"] == pytest.approx(r["mean_1"], rel=1e-12, abs=0), key
        if r["mean_2"] is None:
            assert m.get("noise_uohm_mean") is None, key
        else:
            assert m["noise_uohm_mean"] == pytest.approx(r["mean_2"], rel=1e-12, abs=0), key
    noisy = {key for key, r in want.items() if r["mean_2"] is not None}
    assert noisy == {("C1", t) for t in minutes if (t - START_NS) // (60 * NS) % 2 == 0}
