"""A plant split by potline (contract 5.1), through real Mosquitto and InfluxDB 1.x.

The same two potlines are taken in three ways, each into a database of its own: by one
instance, by two instances that own a potline each, and by one ``cellmon run`` with two
shards. The three databases must hold the same raw points and the same KPI points, and
each instance's self-metrics must count its own potline's samples only.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

POTLINES = ("P1", "P2")
CELLS = ("C1", "C2", "C3")
STEPS = 1800  # half an hour at 1 Hz
T0_MS = (int(time.time()) // 3600 - 30) * 3600 * 1000  # a whole hour, 30 h ago
SAMPLES_PER_POTLINE = len(CELLS) * STEPS
KPIS = ("sec_cell", "sec_potline", "anode_change", "anode_potline", "ae_potline", "metal_tap")
P2_ONLY = "    - id: P2\n      baseline_sec_kwh_per_t: 13400\n"


def messages() -> list[tuple[str, bytes]]:
    """Ten samples a message, per cell; an anode effect, an anode change and a tap per line."""
    out = []
    for p, potline in enumerate(POTLINES):
        for c, cell in enumerate(CELLS):
            for start in range(0, STEPS, 10):
                batch = [
                    {
                        "ts": T0_MS + k * 1000,
                        "cell_voltage_v": 9.5 if (c == 0 and 600 <= k < 630) else 4.1 + c / 100,
                        "line_current_ka": 300.0 + p,
                        "bath_temp_c": 955.0,
                    }
                    for k in range(start, start + 10)
                ]
                out.append((f"smelter/{potline}/{cell}/telemetry", orjson.dumps(batch)))
        change = {"ts": T0_MS + 900_000, "type": "anode_change", "anode": 3, "block": "590"}
        tap = {"ts": T0_MS + 1_200_000, "type": "metal_tap", "metal_kg": 1800.0 + p}
        out += [(f"smelter/{potline}/C2/event", orjson.dumps(e)) for e in (change, tap)]
    return out


def config(directory: Path, broker: Mosquitto, influx: InfluxV1, db: str, extra: str) -> Path:
    """Both potlines by default; ``extra`` adds keys at the end (``shards:``)."""
    return write_config(
        directory,
        mqtt_port=broker.port,
        influx_url=influx.url,
        database=db,
        extra=P2_ONLY + extra,
    )


def only(path: Path, potline: str) -> Path:
    """The same config, for one potline."""
    text = path.read_text().replace(P2_ONLY, "")
    if potline == "P2":
        text = text.replace("    - id: P1\n      baseline_sec_kwh_per_t: 13450\n", P2_ONLY)
    path.write_text(text)
    return path


def raw_count(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return int(rows[0]["count"]) if rows else 0


TAGS = ("time", "potline", "cell", "period", "anode", "block")


def contents(influx: InfluxV1, db: str) -> dict[str, dict[tuple, dict]]:
    """Every raw and KPI point: (measurement, time and tags) → fields."""
    out = {}
    for measurement in ("cell", *KPIS):
        rows = influx.query(f"SELECT * FROM {measurement} GROUP BY *", db)
        out[measurement] = {
            tuple(r.get(t) for t in TAGS): {
                k: v for k, v in r.items() if k not in TAGS and v is not None
            }
            for r in rows
        }
    return out


def assert_same(got: dict[str, dict[tuple, dict]], want: dict[str, dict[tuple, dict]]) -> None:
    """Raw points bit for bit; KPIs to 1e-9 (batches cut the sums in other places)."""
    assert got["cell"] == want["cell"]
    for measurement in KPIS:
        assert got[measurement].keys() == want[measurement].keys(), measurement
        for key, fields in want[measurement].items():
            numbers = {k: v for k, v in fields.items() if isinstance(v, float)}
            others = {k: v for k, v in fields.items() if k not in numbers}
            have = got[measurement][key]
            assert {k: have.get(k) for k in numbers} == pytest.approx(numbers, rel=1e-9), key
            assert {k: have.get(k) for k in others} == others, (measurement, key)
            assert have.keys() == fields.keys(), (measurement, key)


def last_metrics(influx: InfluxV1, db: str) -> dict[str, dict]:
    rows = influx.query("SELECT * FROM cellmon GROUP BY instance ORDER BY time DESC LIMIT 1", db)
    return {r["instance"]: r for r in rows}


def run(
    pipelines: list[Pipeline], broker: Mosquitto, influx: InfluxV1, db: str, sessions: int = 1
) -> None:
    """Start, publish once every MQTT session is subscribed, wait for the points, stop."""
    for p in pipelines:
        p.start()
        wait_for(lambda p=p: p.new_log().count("connected to") >= sessions, 30, p.new_log)
    publish_all(broker.port, messages())
    want = len(POTLINES) * SAMPLES_PER_POTLINE
    wait_for(lambda: raw_count(influx, db) >= want, 180, pipelines[0].new_log)
    for p in pipelines:
        assert p.terminate() == 0, p.new_log()


def test_a_plant_split_by_potline_stores_what_one_instance_stores(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    dbs = {"one": "shard_one", "two": "shard_two", "shards": "shard_shards"}
    for db in dbs.values():
        influx_v1.create_database(db)

    whole = config(tmp_path / "one", plant_broker, influx_v1, dbs["one"], "")
    run([Pipeline(whole, tmp_path / "one.log")], plant_broker, influx_v1, dbs["one"])

    instances = [
        only(config(tmp_path / f"two-{p}", plant_broker, influx_v1, dbs["two"], ""), p)
        for p in POTLINES
    ]
    pipelines = [Pipeline(c, tmp_path / f"two-{c.parent.name}.log") for c in instances]
    run(pipelines, plant_broker, influx_v1, dbs["two"])

    shards = "shards:\n  - {name: east, potlines: [P1]}\n  - {name: west, potlines: [P2]}\n"
    sharded = config(tmp_path / "shards", plant_broker, influx_v1, dbs["shards"], shards)
    run([Pipeline(sharded, tmp_path / "shards.log")], plant_broker, influx_v1, dbs["shards"], 2)

    reference = contents(influx_v1, dbs["one"])
    assert len(reference["cell"]) == len(POTLINES) * SAMPLES_PER_POTLINE
    assert {m for m, rows in reference.items() if not rows} == set()
    assert_same(contents(influx_v1, dbs["two"]), reference)
    assert_same(contents(influx_v1, dbs["shards"]), reference)

    for db in (dbs["two"], dbs["shards"]):
        metrics = last_metrics(influx_v1, db)
        assert len(metrics) == 2, metrics.keys()
        for m in metrics.values():
            assert m["accepted"] == SAMPLES_PER_POTLINE + 2  # its samples, a change and a tap
            assert m["rejected"] == 0
            assert m["foreign"] == 0  # the subscriptions kept the other potline away
    shard_names = sorted(last_metrics(influx_v1, dbs["shards"]))
    assert [n.rsplit("-", 1)[1] for n in shard_names] == ["east", "west"]
