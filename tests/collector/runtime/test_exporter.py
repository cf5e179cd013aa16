"""``metrics.listen`` during a real ``cellmon run`` against Mosquitto and InfluxDB 1.x.

``/metrics`` must say what the ``cellmon`` measurement says, and ``/health`` must follow
the broker session.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto, free_port

pytestmark = pytest.mark.integration

N_GOOD = 40
T0_MS = (int(time.time()) - 3600) * 1000
# The malformed messages and the reason each is rejected for (contract section 1).
MALFORMED = [
    (b"not json at all", "not_json"),
    (b"{broken", "not_json"),
    (b'{"ts": 1700000000000, "line_current_ka": 300}', "missing_key"),
    (b'{"ts": 1700000000000, "cell_voltage_v": 999, "line_current_ka": 300}', "out_of_bounds"),
    (b'{"ts": 1700000000000, "cell_voltage_v": 999, "line_current_ka": 300}', "out_of_bounds"),
]
# Each counter field of `cellmon` and its Prometheus family, as docs/operations.md lists them.
FAMILIES = {
    "messages": "cellmon_mqtt_messages",
    "received": "cellmon_received_objects",
    "accepted": "cellmon_accepted_objects",
    "duplicates": "cellmon_duplicate_objects",
    "foreign": "cellmon_foreign_objects",
    "late": "cellmon_late_samples",
    "processor_errors": "cellmon_processor_errors",
    "unencodable": "cellmon_unencodable_points",
    "write_errors": "cellmon_write_errors",
    "dropped": "cellmon_dropped_lines",
    "alerts_published": "cellmon_alerts_published",
    "rules_reloads": "cellmon_rules_reloads",
    "rules_rejected": "cellmon_rules_rejected",
    "sparkplug_births": "cellmon_sparkplug_births",
    "sparkplug_deaths": "cellmon_sparkplug_deaths",
    "sparkplug_seq_gaps": "cellmon_sparkplug_sequence_gaps",
    "sparkplug_lost": "cellmon_sparkplug_lost_messages",
    "sparkplug_unknown_alias": "cellmon_sparkplug_unknown_aliases",
    "sparkplug_rebirth_requests": "cellmon_sparkplug_rebirth_requests",
}


def good(k: int) -> tuple[str, bytes]:
    body = {"ts": T0_MS + k * 1000, "cell_voltage_v": 4.2, "line_current_ka": 300.0}
    return "smelter/P1/C01/telemetry", orjson.dumps(body)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of ``/metrics``: family name → labels → value."""
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            families.setdefault(family.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return families


def newest_cellmon(influx: InfluxV1, db: str) -> dict[str, Any]:
    rows = influx.query("SELECT * FROM cellmon ORDER BY time DESC LIMIT 1", db)
    return rows[0] if rows else {}


def start(
    tmp_path: Path, broker: Mosquitto, influx: InfluxV1, db: str, extra: str = "", **more: Any
) -> tuple[Pipeline, int]:
    port = free_port()
    config = write_config(
        tmp_path,
        **more,
        mqtt_port=broker.port,
        influx_url=influx.url,
        database=db,
        extra=f"{extra}metrics:\n  listen: 127.0.0.1:{port}\n",
        mqtt_options="  reconnect_max_s: 1\n",
    )
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    return pipeline, port


def test_metrics_say_what_the_cellmon_measurement_says(
    tmp_path: Path, mosquitto: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    pipeline, port = start(tmp_path, mosquitto, influx_v1, influx_db)
    topic = "smelter/P1/C02/telemetry"
    published = [good(k) for k in range(N_GOOD)] + [(topic, body) for body, _ in MALFORMED]
    publish_all(mosquitto.port, published)
    reasons: dict[str, int] = {}
    for _, reason in MALFORMED:
        reasons[reason] = reasons.get(reason, 0) + 1

    def settled() -> bool:
        point = newest_cellmon(influx_v1, influx_db)
        return point.get("accepted") == N_GOOD and point.get("rejected") == len(MALFORMED)

    wait_for(settled, 60, pipeline.new_log)
    metrics = scrape(port)
    point = newest_cellmon(influx_v1, influx_db)  # the counters are still: the same values
    assert pipeline.terminate() == 0

    def value(family: str) -> float:
        return metrics[family][()]

    gauges_and_sums = {"time", "instance", "buffered", "lag_s", "written", "rejected"}
    counters = {k for k in point if k not in gauges_and_sums and not k.startswith("rejected_")}
    assert counters == set(FAMILIES)  # every counter of the measurement is served
    for field, family in FAMILIES.items():
        assert value(f"{family}") == point[field], field
    assert value("cellmon_mqtt_messages") == N_GOOD + len(MALFORMED)
    assert value("cellmon_accepted_objects") == N_GOOD
    rejected = {
        dict(labels)["reason"]: v for labels, v in metrics["cellmon_rejected_objects"].items()
    }
    assert rejected == reasons
    assert rejected == {r: point[f"rejected_{r}"] for r in reasons}
    # written goes on while the cellmon points themselves are written: never behind
    assert value("cellmon_written_lines") >= point["written"] > N_GOOD
    assert value("cellmon_buffered_lines") >= 0
    assert value("cellmon_broker_connected") == 1
    assert metrics["cellmon_journal_bytes"][(("file", "inbox.sqlite"),)] > 0
    assert "process_resident_memory_bytes" in metrics
    assert any(name.startswith("python_") for name in metrics)


def health(port: int) -> tuple[int, dict[str, Any]]:
    status, body = get(f"http://127.0.0.1:{port}/health")
    return status, json.loads(body)


def test_health_follows_the_broker_session(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        pipeline, port = start(tmp_path, broker, influx_v1, influx_db)
        wait_for(lambda: health(port)[0] == 200, 30, lambda: str(health(port)))
        body = health(port)[1]
        assert body["broker_session"] is True
        assert body["database"] == "ok"
        broker.stop()
        wait_for(lambda: health(port)[0] == 503, 30, lambda: str(health(port)))
        body = health(port)[1]
        assert body["broker_session"] is False
        assert any(f"broker at 127.0.0.1:{broker.port}" in r for r in body["reasons"])
        broker.start()
        wait_for(lambda: health(port)[0] == 200, 60, lambda: str(health(port)))
        assert health(port)[1]["reasons"] == []
        assert pipeline.terminate() == 0
    finally:
        broker.stop()


def test_health_follows_the_database(
    tmp_path: Path, mosquitto: Mosquitto, influx: InfluxV1
) -> None:
    pipeline, port = start(tmp_path, mosquitto, influx, "plant")
    wait_for(lambda: health(port)[0] == 200, 30, lambda: str(health(port)))
    influx.stop()
    publish_all(mosquitto.port, [good(k) for k in range(5)])  # output that waits
    wait_for(lambda: health(port)[0] == 503, 60, lambda: str(health(port)))
    body = health(port)[1]
    assert body["database"] == "failing"
    assert body["broker_session"] is True
    assert body["buffered"] > 0
    assert any(r.startswith("database: the last write failed") for r in body["reasons"])
    influx.start()
    wait_for(lambda: health(port)[0] == 200, 60, lambda: str(health(port)))
    assert pipeline.terminate() == 0


SHARDS = """\
    - id: P2
      baseline_sec_kwh_per_t: 13450
shards:
  - {name: east, potlines: [P1]}
  - {name: west, potlines: [P2]}
"""


def test_each_shard_serves_its_own_on_the_next_port(
    tmp_path: Path, mosquitto: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    instance = f"cellmon-test-{uuid4().hex[:8]}"
    pipeline, port = start(tmp_path, mosquitto, influx_v1, influx_db, SHARDS, client_id=instance)
    wait_for(lambda: pipeline.new_log().count("connected to") == 2, 30, pipeline.new_log)
    west = [("smelter/P2/C01/telemetry", body) for _, body in (good(k) for k in range(7))]
    publish_all(mosquitto.port, [good(k) for k in range(3)] + west)

    def accepted(shard_port: int) -> float:
        return scrape(shard_port)["cellmon_accepted_objects"][()]

    wait_for(lambda: (accepted(port), accepted(port + 1)) == (3, 7), 60, pipeline.new_log)
    infos = [scrape(p)["cellmon_info"] for p in (port, port + 1)]
    assert [dict(next(iter(info))) for info in infos] == [
        {"cellmon_instance": f"{instance}-east", "potlines": "P1"},
        {"cellmon_instance": f"{instance}-west", "potlines": "P2"},
    ]
    assert pipeline.terminate() == 0
