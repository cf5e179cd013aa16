"""End to end through real Mosquitto and InfluxDB 1.x, with ``cellmon run`` as a process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from collector.source.deadletter import read_dead_letters
from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mqtt_client")]

CELLS = [f"C{i:02d}" for i in range(1, 21)]
STEPS = 2600
T0_MS = (int(time.time()) - 2 * 86_400) * 1000
HELD_BACK = {("C01", k) for k in range(100, 105)} | {("C02", k) for k in range(100, 105)}


def sample(c: int, k: int) -> dict:
    """Sample k of cell index c: values chosen so every one is distinct and exact."""
    return {
        "ts": T0_MS + k * 1000,
        "cell_voltage_v": round(4.1 + 0.001 * (k % 200) + 0.01 * c, 4),
        "line_current_ka": round(300 + 0.01 * (k % 50), 3),
        "bath_temp_c": 950.0 + c,
    }


def topic(cell: str, kind: str = "telemetry") -> str:
    return f"smelter/P1/{cell}/{kind}"


def main_stream() -> list[tuple[str, bytes]]:
    """Even groups of ten steps as single messages, odd groups as one array per cell."""
    out = []
    for g in range(STEPS // 10):
        for c, cell in enumerate(CELLS):
            objs = [sample(c, k) for k in range(g * 10, g * 10 + 10) if (cell, k) not in HELD_BACK]
            if g % 2:
                out.append((topic(cell), orjson.dumps(objs)))
            else:
                out.extend((topic(cell), orjson.dumps(o)) for o in objs)
    return out


def duplicates() -> list[tuple[str, bytes]]:
    singles = [(topic("C03"), orjson.dumps(sample(2, k))) for k in range(25)]
    array = [(topic("C04"), orjson.dumps([sample(3, k) for k in range(30, 40)]))]
    return singles + array  # 25 + 10 samples already sent


def malformed() -> list[tuple[str, bytes, str]]:
    now_ms = int(time.time() * 1000)
    good = [sample(4, STEPS), sample(4, STEPS + 1)]
    return [
        (topic("C05"), b"{not json", "not_json"),
        (topic("C05"), orjson.dumps({"ts": T0_MS, "cell_voltage_v": 4.2}), "missing_key"),
        (topic("C05"), orjson.dumps({**sample(4, 1), "cell_voltage_v": "4.2"}), "wrong_type"),
        (
            topic("C05"),
            b'{"ts": %d, "cell_voltage_v": NaN, "line_current_ka": 300}' % T0_MS,
            "non_finite",
        ),
        (topic("C05"), orjson.dumps({**sample(4, 1), "cell_voltage_v": 250}), "out_of_bounds"),
        (topic("C05"), orjson.dumps({**sample(4, 1), "ts": now_ms + 3_600_000}), "future_ts"),
        (topic("C05"), orjson.dumps([good[0], {"cell_voltage_v": 4.2}, good[1]]), "missing_key"),
        ("smelter/P1/C 5/telemetry", orjson.dumps(sample(4, 1)), "bad_topic"),
        (
            topic("C06", "event"),
            orjson.dumps({"ts": T0_MS, "type": "anode_change", "anode": "x", "block": "590"}),
            "wrong_type",
        ),
    ]


def events() -> list[tuple[str, bytes]]:
    taps = [
        {"ts": T0_MS + h * 3_600_000, "type": "metal_tap", "metal_kg": 2200.0 + h}
        for h in (1, 2, 3)
    ]
    change = {"ts": T0_MS + 600_000, "type": "anode_change", "anode": 12, "block": "590"}
    return [(topic("C06", "event"), orjson.dumps(e)) for e in [*taps, change]]


def row(c: int, k: int) -> tuple:
    """How sample k of cell index c must read back from InfluxDB."""
    s = sample(c, k)
    return (
        CELLS[c],
        s["ts"] * 1_000_000,
        s["cell_voltage_v"],
        s["line_current_ka"],
        s["bath_temp_c"],
    )


def main_stream_rows() -> set[tuple]:
    return {
        row(c, k)
        for c, cell in enumerate(CELLS)
        for k in range(STEPS)
        if (cell, k) not in HELD_BACK
    }


def influx_rows(influx: InfluxV1, db: str) -> set[tuple]:
    rows = set()
    for cell in CELLS:
        for r in influx.query(
            f"SELECT voltage_v, current_ka, bath_temp_c FROM cell WHERE cell = '{cell}' "
            "GROUP BY potline, cell",
            db,
        ):
            assert r["potline"] == "P1"
            rows.add((r["cell"], r["time"], r["voltage_v"], r["current_ka"], r["bath_temp_c"]))
    return rows


def count_cell_points(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return rows[0]["count"] if rows else 0


def last_metrics(influx: InfluxV1, db: str) -> dict:
    return influx.query("SELECT * FROM cellmon ORDER BY time DESC LIMIT 1", db)[0]


@pytest.fixture
def pipeline(tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str):
    """``cellmon run`` against a broker with the queue limits docs/operations.md recommends.

    With Mosquitto's default of 1000 queued messages per client, a publisher that outruns
    its subscriber for a moment loses messages in the broker, before cellmon sees them.
    """
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=influx_db
    )
    p = Pipeline(config, tmp_path / "cellmon.log")
    yield p
    if p.proc and p.proc.poll() is None:
        p.kill()


def test_end_to_end_exact_contents(
    pipeline: Pipeline, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str, tmp_path: Path
) -> None:
    pipeline.start()
    bad = malformed()
    publish_all(plant_broker.port, main_stream())
    publish_all(plant_broker.port, duplicates() + [(t, p) for t, p, _ in bad] + events())
    late = [
        (topic(cell), orjson.dumps(sample(CELLS.index(cell), k))) for cell, k in sorted(HELD_BACK)
    ]
    publish_all(plant_broker.port, late)

    held_back = {row(CELLS.index(cell), k) for cell, k in HELD_BACK}
    want = main_stream_rows() | held_back | {row(4, STEPS), row(4, STEPS + 1)}
    assert len(want) == 52_002
    wait_for(lambda: count_cell_points(influx_v1, influx_db) >= len(want), 180, pipeline.new_log)
    assert pipeline.terminate() == 0

    assert influx_rows(influx_v1, influx_db) == want
    taps = influx_v1.query("SELECT metal_kg FROM metal_tap GROUP BY cell", influx_db)
    assert sorted((r["cell"], r["metal_kg"]) for r in taps) == [
        ("C06", 2201.0),
        ("C06", 2202.0),
        ("C06", 2203.0),
    ]
    raw_events = influx_v1.query("SELECT * FROM cell_event GROUP BY type", influx_db)
    assert sorted(r["type"] for r in raw_events) == [
        "anode_change",
        "metal_tap",
        "metal_tap",
        "metal_tap",
    ]

    letters = read_dead_letters(tmp_path / "state" / "deadletter.jsonl")
    assert sorted(d["reason"] for d in letters) == sorted(reason for _, _, reason in bad)
    assert all(d["detail"] and d["topic"] and d["payload"] for d in letters)
    assert {d["payload"] for d in letters} >= {"{not json"}

    m = last_metrics(influx_v1, influx_db)
    assert m["accepted"] == 52_002 + 4
    assert m["rejected"] == 9
    assert m["duplicates"] == 35
    assert m["late"] == 10
    assert m["received"] == 52_006 + 9 + 35
    assert m["rejected_missing_key"] == 2
    assert m["written"] >= 52_002 + 8  # samples, 4 raw events, 3 taps, metric points
    assert m["buffered"] == 0


def test_sigterm_mid_stream_loses_and_doubles_nothing(
    pipeline: Pipeline, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    pipeline.start()
    stream = main_stream()
    publisher = threading.Thread(target=publish_all, args=(plant_broker.port, stream))
    publisher.start()
    wait_for(lambda: count_cell_points(influx_v1, influx_db) > 5_000, 120, pipeline.new_log)
    assert pipeline.terminate() == 0
    first_run = last_metrics(influx_v1, influx_db)
    assert "stopped" in pipeline.new_log()

    pipeline.start()
    publisher.join(300)
    want = main_stream_rows()
    wait_for(lambda: count_cell_points(influx_v1, influx_db) >= len(want), 180, pipeline.new_log)
    assert pipeline.terminate() == 0
    second_run = last_metrics(influx_v1, influx_db)

    assert influx_rows(influx_v1, influx_db) == want
    # The counters live in the journal and carry over the restart: each sample was
    # accepted exactly once, whatever the broker redelivered.
    assert 0 < first_run["accepted"] < len(want)
    assert second_run["accepted"] == len(want)
    assert second_run["late"] == 0
