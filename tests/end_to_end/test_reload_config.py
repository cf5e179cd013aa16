"""``cellmon.yaml`` edited while ``cellmon run`` receives: a CE taken live, a port refused.

One cell at constant voltage and current publishes three hours of a shift (one sample per
10 s, contiguous) over the real Mosquitto into InfluxDB 1.x. After the first hour the
potline's ``current_efficiency`` is changed from the default 0.925 to 0.95 in the file: the
shift's open point is written again with it, nothing lost or doubled, no restart. Then
``mqtt.port`` is changed: refused with its reason, and the last hour still arrives on the
old port.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

NS = 1_000_000_000
STEP_S = 10
PART = 360  # samples per part: one hour
VOLTS, KA = 4.0, 400.0
FARADAY = 0.33557e-3  # t of aluminium per kA·h at 100 % current efficiency
BASELINE = "      baseline_sec_kwh_per_t: 13450\n"  # write_config's P1, with the default CE 0.925


def shift_start_ms() -> int:
    """Yesterday's first shift (00:00 in the plant's zone): three hours of it stay open."""
    zone = ZoneInfo("Asia/Shanghai")
    day = datetime.now(zone).date() - timedelta(days=1)
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()) * 1000


def part(first_ms: int, k: int) -> list[tuple[str, bytes]]:
    body = {"cell_voltage_v": VOLTS, "line_current_ka": KA}
    return [
        (
            "smelter/P1/C1/telemetry",
            orjson.dumps({"ts": first_ms + step * STEP_S * 1000, **body}),
        )
        for step in range(k * PART, (k + 1) * PART)
    ]


def written(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return rows[0]["count"] if rows else 0


def shift_point(influx: InfluxV1, db: str, measurement: str) -> dict:
    rows = influx.query(f"SELECT * FROM {measurement} WHERE period = 'shift'", db)
    assert len(rows) <= 1
    return rows[0] if rows else {}


def test_a_current_efficiency_changed_mid_shift_is_taken_live(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1
) -> None:
    db = "reload_config"
    influx_v1.create_database(db)
    config = write_config(
        tmp_path,
        mqtt_port=plant_broker.port,
        influx_url=influx_v1.url,
        database=db,
        extra="rules_check_s: 0.2\n",
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    first = shift_start_ms()

    publish_all(plant_broker.port, part(first, 0))
    wait_for(lambda: written(influx_v1, db) == PART, 60, pipeline.new_log)
    ce = lambda: shift_point(influx_v1, db, "sec_cell").get("ce_configured_pct")  # noqa: E731 - a one-line helper of this test
    wait_for(lambda: ce() == pytest.approx(92.5), 60, pipeline.new_log)
    text = config.read_text()
    config.write_text(text.replace(BASELINE, BASELINE + "      current_efficiency: 0.95\n"))
    wait_for(
        lambda: (
            "cellmon.yaml reloaded" in (log := pipeline.new_log()) and "processors replaced" in log
        ),
        30,
        pipeline.new_log,
    )
    publish_all(plant_broker.port, part(first, 1))
    wait_for(lambda: written(influx_v1, db) == 2 * PART, 60, pipeline.new_log)
    wait_for(lambda: ce() == pytest.approx(95.0), 60, pipeline.new_log)  # rewritten live

    port = f"  port: {plant_broker.port}\n"
    config.write_text(config.read_text().replace(port, f"  port: {plant_broker.port + 1}\n"))
    refused = (
        "cellmon.yaml not reloaded: mqtt changed (needs a restart); the running configuration stays"
    )
    wait_for(lambda: refused in pipeline.new_log(), 30, pipeline.new_log)
    publish_all(plant_broker.port, part(first, 2))  # still received on the old port
    wait_for(lambda: written(influx_v1, db) == 3 * PART, 60, pipeline.new_log)
    assert pipeline.terminate() == 0

    (counts,) = influx_v1.query(
        "SELECT last(received) AS received, last(accepted) AS accepted, "
        "last(duplicates) AS duplicates, last(rules_reloads) AS reloads, "
        "last(rules_rejected) AS refused FROM cellmon",
        db,
    )
    assert counts["received"] == counts["accepted"] == 3 * PART  # nothing lost
    assert counts["duplicates"] in (0, None)  # nothing twice
    assert (counts["reloads"], counts["refused"]) == (1, 1)
    times = [r["time"] for r in influx_v1.query("SELECT voltage_v FROM cell", db)]
    assert times == [(first + step * STEP_S * 1000) * 1_000_000 for step in range(3 * PART)]

    hours = (3 * PART - 1) * STEP_S / 3600
    metal = FARADAY * KA * hours * 0.95  # the whole shift at the CE in force when written
    for measurement in ("sec_cell", "sec_potline"):
        point = shift_point(influx_v1, db, measurement)
        assert point["time"] == first * 1_000_000
        assert point["ce_configured_pct"] == pytest.approx(95.0)
        assert point["aluminium_t"] == pytest.approx(metal, rel=1e-9)
        assert point["energy_kwh"] == pytest.approx(VOLTS * KA * hours, rel=1e-9)
