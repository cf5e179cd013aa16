"""Rules reloaded while ``cellmon run`` receives: nothing lost or doubled, KPIs go on.

Three cells at constant voltage and current publish three parts of an hour each (one
sample per 10 s, contiguous) over the real Mosquitto into InfluxDB 1.x. The derived field
``r1`` = 2 U is replaced by ``r2`` = 3 U and a second input (a foreign layout) is added by
editing the rules file right after the first part was published; then the file is broken,
which must leave the new rules in force. A second run reloads on SIGHUP alone.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest

from tests.harness import DEFAULT_RULES, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

NS = 1_000_000_000
STEP_S = 10
PART = 360  # samples per cell per part: one hour
VOLTS = {"C1": 4.0, "C2": 4.1, "C3": 4.2}
KA = 400.0

RULES_A = DEFAULT_RULES + "derived:\n  - name: r1\n    expr: cell_voltage_v * 2\n"
RULES_B = (
    DEFAULT_RULES
    + """\
  - name: foreign
    topic: plant/{potline}/pots/{cell}/data
    kind: telemetry
    fields:
      cell_voltage_v: {key: U_mV, unit: mV}
      line_current_ka: {key: I_A, unit: A}
derived:
  - name: r2
    expr: cell_voltage_v * 3
"""
)
BROKEN = RULES_B + "  - name: r3\n    expr: cell_voltage * 4\n"


def start_ms() -> int:
    return (time.time_ns() // NS - 4 * 3600) // 3600 * 3600 * 1000  # a whole hour, 3-4 h ago


def part(first_ms: int, k: int, foreign: frozenset[str] = frozenset()) -> list[tuple[str, bytes]]:
    """Part ``k`` of every cell, one message per sample; ``foreign`` cells in their layout."""
    messages = []
    for step in range(k * PART, (k + 1) * PART):
        ts = first_ms + step * STEP_S * 1000
        for cell, volts in VOLTS.items():
            if cell in foreign:
                body = {"ts": ts, "U_mV": round(volts * 1000), "I_A": round(KA * 1000)}
                messages.append((f"plant/P1/pots/{cell}/data", orjson.dumps(body)))
            else:
                body = {"ts": ts, "cell_voltage_v": volts, "line_current_ka": KA}
                messages.append((f"smelter/P1/{cell}/telemetry", orjson.dumps(body)))
    return messages


def reloaded(log: str) -> bool:
    """Both processes switched: the MQTT one (inputs) and the worker (derived, alarms)."""
    return "inputs switched" in log and "processors replaced" in log


def raw(influx: InfluxV1, db: str) -> list[dict]:
    return influx.query("SELECT * FROM cell GROUP BY cell", db)


def written(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return rows[0]["count"] if rows else 0


def start(tmp_path: Path, broker: Mosquitto, influx: InfluxV1, db: str, check_s: float):
    influx.create_database(db)
    config = write_config(
        tmp_path,
        mqtt_port=broker.port,
        influx_url=influx.url,
        database=db,
        rules=RULES_A,
        extra=f"rules_check_s: {check_s}\n",
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    return pipeline, tmp_path / "rules" / "default.yaml"


def test_rules_changed_mid_stream(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    db = "reload_mid_stream"
    pipeline, rules = start(tmp_path, plant_broker, influx_v1, db, check_s=0.2)
    first = start_ms()
    publish_all(plant_broker.port, part(first, 0))
    rules.write_text(RULES_B)  # while part 0 is still being processed
    wait_for(lambda: reloaded(pipeline.new_log()), 30, pipeline.new_log)
    publish_all(plant_broker.port, part(first, 1, foreign=frozenset({"C1"})))
    wait_for(lambda: written(influx_v1, db) == 2 * PART * 3, 60, pipeline.new_log)

    rules.write_text(BROKEN)
    wait_for(lambda: "rules not reloaded" in pipeline.new_log(), 30, pipeline.new_log)
    publish_all(plant_broker.port, part(first, 2))
    wait_for(lambda: written(influx_v1, db) == 3 * PART * 3, 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    log = pipeline.new_log()
    assert f"rules not reloaded: {rules}:18: derived[1].expr: unknown name 'cell_voltage'" in log

    (metrics,) = influx_v1.query(
        "SELECT last(rules_reloads) AS ok, last(rules_rejected) AS refused FROM cellmon", db
    )
    assert (metrics["ok"], metrics["refused"]) == (1, 1)

    rows = raw(influx_v1, db)
    assert len(rows) == 3 * PART * 3  # nothing lost, nothing twice
    assert len({(r["cell"], r["time"]) for r in rows}) == len(rows)
    for cell, volts in VOLTS.items():
        mine = sorted((r for r in rows if r["cell"] == cell), key=lambda r: r["time"])
        assert [r["time"] for r in mine] == [
            (first + step * STEP_S * 1000) * 1_000_000 for step in range(3 * PART)
        ]
        assert all(r["voltage_v"] == volts and r["current_ka"] == KA for r in mine)
        # each sample got the rules in force when it was processed: r1 until the switch,
        # r2 after it, never both; from part 1 on, r2 only (the broken edit changed nothing)
        kinds = ["r1" if r["r1"] is not None else "r2" for r in mine]
        assert all((r["r1"] is None) != (r["r2"] is None) for r in mine)
        assert kinds == sorted(kinds)  # r1 ... r1 r2 ... r2
        assert set(kinds[PART:]) == {"r2"}
        assert all(r["r1"] == 2 * volts for r in mine if r["r1"] is not None)
        assert all(r["r2"] == pytest.approx(3 * volts) for r in mine if r["r2"] is not None)

    # the kWh/t state went on through both reloads: the day periods hold every interval
    for cell, volts in VOLTS.items():
        days = influx_v1.query(
            f"SELECT energy_kwh, hours_covered FROM sec_cell "
            f"WHERE period = 'day' AND cell = '{cell}'",
            db,
        )
        hours = (3 * PART - 1) * STEP_S / 3600
        assert sum(r["hours_covered"] for r in days) == pytest.approx(hours, rel=1e-9)
        assert sum(r["energy_kwh"] for r in days) == pytest.approx(volts * KA * hours, rel=1e-9)


def test_sighup_reloads_the_rules(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    db = "reload_sighup"
    pipeline, rules = start(tmp_path, plant_broker, influx_v1, db, check_s=0)
    first = start_ms()
    publish_all(plant_broker.port, part(first, 0))
    wait_for(lambda: written(influx_v1, db) == PART * 3, 60, pipeline.new_log)
    rules.write_text(RULES_B)  # not looked at: checks are off
    assert pipeline.proc is not None
    pipeline.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloaded(pipeline.new_log()), 30, pipeline.new_log)
    publish_all(plant_broker.port, part(first, 1, foreign=frozenset({"C2"})))
    wait_for(lambda: written(influx_v1, db) == 2 * PART * 3, 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    rows = raw(influx_v1, db)
    after = [r for r in rows if r["time"] >= (first + PART * STEP_S * 1000) * 1_000_000]
    before = [r for r in rows if r not in after]
    assert len(before) == len(after) == PART * 3
    assert all(r["r1"] == 2 * VOLTS[r["cell"]] and r["r2"] is None for r in before)
    assert all(r["r2"] == pytest.approx(3 * VOLTS[r["cell"]]) for r in after)
