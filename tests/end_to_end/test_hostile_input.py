"""A hostile controller, end to end: real Mosquitto, real InfluxDB 1.x, ``cellmon run``.

Every payload of issue 10 (each of which once stopped ingestion, killed the MQTT thread or
lost accepted data) is published between good samples. Every good sample must be stored
exactly once, every bad object dead-lettered with its reason, the odd-but-valid ones stored
exactly as sent, the counters must add up, and the pipeline must still be running and
stop with exit 0.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from collector.source.deadletter import read_dead_letters
from tests.harness import Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
GOOD_PER_GAP = 10


def deep_object(levels: int, inner: bytes = b'{"x": 1}') -> bytes:
    """``levels`` nested objects, the innermost ``inner``."""
    return b'{"a":' * (levels - 1) + inner + b"}" * (levels - 1)


def event(body: bytes) -> tuple[str, bytes]:
    return ("smelter/K7/C01/event", body)


def telemetry(body: bytes, cell: str = "C01") -> tuple[str, bytes]:
    return (f"smelter/K7/{cell}/telemetry", body)


TS = b'"ts": %d' % T0_MS
SAMPLE = b'"cell_voltage_v": 4.2, "line_current_ka": 300'
HUGE = b"1" + b"0" * 400

# (message, reason it is rejected for)
BAD: list[tuple[tuple[str, bytes], str]] = [
    (event(b'{%s, "type": "note", "detail": %s}' % (TS, deep_object(300))), "too_deep"),
    (event(b'{%s, "type": "note", "text": "\\ud800"}' % TS), "bad_utf8"),
    (telemetry(b'{%s, %s, "x": %s}' % (TS, SAMPLE, HUGE)), "out_of_bounds"),
    (telemetry(b'{"ts": %s, %s}' % (HUGE, SAMPLE)), "out_of_bounds"),
    (telemetry(b"[" * 100_000 + b"]" * 100_000), "too_deep"),
    (telemetry(deep_object(40_000)), "too_deep"),
    (telemetry(b'{%s, %s, "a\\nb": 1.5}' % (TS, SAMPLE)), "bad_key"),
    (event(b'{%s, "type": "line\\nbreak"}' % TS), "bad_key"),
    (telemetry(b'{"ts": "2009-W07-2T10:00:00+08:00", %s}' % SAMPLE), "bad_ts"),
    (telemetry(b'{"ts": "20231114T221320Z", %s}' % SAMPLE), "bad_ts"),
    (telemetry(b'{"ts": "1999-12-31T23:59:59Z", %s}' % SAMPLE), "out_of_bounds"),
    # InfluxDB 1.x cannot store a name ending in a backslash (see collector/sinks/lineproto.py)
    (telemetry(b'{%s, %s, "x\\\\": 1.5}' % (TS, SAMPLE)), "bad_key"),
    (event(b'{%s, "type": "anode_change", "anode": 3, "block": "590\\\\"}' % TS), "bad_key"),
]
# Odd but valid: accepted, and stored exactly as sent.
ODD_TS_MS = T0_MS + 500_000
ODD: list[tuple[str, bytes]] = [
    telemetry(b'{"ts": %d, %s, "x\\\\y": 1.5}' % (ODD_TS_MS, SAMPLE), "C03"),
    telemetry(b'{"ts": "2023-11-14t22:21:41z", %s}' % SAMPLE, "C03"),  # ODD_TS_MS + 1 s
    event(b'{"ts": %d, "type": "anode_change", "anode": 3, "block": "5 9,0=\\\\q"}' % ODD_TS_MS),
    event(b'{"ts": %d, "type": "note", "a b,c=d": "say \\"hi\\"\\\\"}' % (ODD_TS_MS + 1000)),
]


def good(cell: str, k: int) -> tuple[str, bytes]:
    """Good sample k of a cell: one per second, voltages distinct and exact."""
    body = {"ts": T0_MS + k * 1000, "cell_voltage_v": 4.0 + k / 1000, "line_current_ka": 300.0}
    return telemetry(orjson.dumps(body), cell)


def stream() -> tuple[list[tuple[str, bytes]], set[tuple[str, int, float]]]:
    """Bad messages each between runs of good samples on C01 and C02; and the good rows."""
    messages, rows = [], set()
    k = 0
    for bad, _ in [*BAD, (None, "")]:
        for _ in range(GOOD_PER_GAP):
            for cell in ("C01", "C02"):
                messages.append(good(cell, k))
                rows.add((cell, (T0_MS + k * 1000) * 1_000_000, 4.0 + k / 1000))
            k += 1
        if bad is not None:
            messages.append(bad)
    return messages, rows


@pytest.fixture
def pipeline(tmp_path: Path, mosquitto: Mosquitto, influx_v1: InfluxV1, influx_db: str):
    config = write_config(
        tmp_path, mqtt_port=mosquitto.port, influx_url=influx_v1.url, database=influx_db
    )
    config.write_text(config.read_text().replace("id: P1", "id: K7"))
    p = Pipeline(config, tmp_path / "cellmon.log")
    yield p
    if p.proc and p.proc.poll() is None:
        p.kill()


def test_no_payload_stops_ingestion_or_loses_what_was_accepted(
    pipeline: Pipeline, mosquitto: Mosquitto, influx_v1: InfluxV1, influx_db: str, tmp_path: Path
) -> None:
    pipeline.start()
    messages, want = stream()
    publish_all(mosquitto.port, messages + ODD)

    def stored() -> set[tuple[str, int, float]]:
        rows = influx_v1.query(
            "SELECT voltage_v FROM cell WHERE cell = 'C01' OR cell = 'C02' GROUP BY cell",
            influx_db,
        )
        return {(r["cell"], r["time"], r["voltage_v"]) for r in rows}

    def settled() -> bool:
        odd = influx_v1.query('SELECT count(*) FROM "cell_event"', influx_db)
        return stored() == want and bool(odd) and odd[0].get("count_anode") == 1

    wait_for(settled, 120, pipeline.new_log)
    assert pipeline.proc is not None
    assert pipeline.proc.poll() is None
    assert len(want) == 2 * GOOD_PER_GAP * (len(BAD) + 1)

    odd_cell = influx_v1.query("SELECT * FROM cell WHERE cell = 'C03'", influx_db)
    assert [(r["time"], r.get("x\\y")) for r in odd_cell] == [
        (ODD_TS_MS * 1_000_000, 1.5),
        ((ODD_TS_MS + 1000) * 1_000_000, None),
    ]
    changes = influx_v1.query("SELECT * FROM anode_change GROUP BY block", influx_db)
    assert [r["block"] for r in changes] == ["5 9,0=\\q"]
    notes = influx_v1.query('SELECT "a b,c=d" FROM cell_event WHERE "type" = \'note\'', influx_db)
    assert [r["a b,c=d"] for r in notes] == ['say "hi"\\']

    assert pipeline.terminate() == 0
    letters = read_dead_letters(tmp_path / "state" / "deadletter.jsonl")
    assert sorted(d["reason"] for d in letters) == sorted(reason for _, reason in BAD)
    assert all(d["detail"] for d in letters)
    metrics = influx_v1.query("SELECT * FROM cellmon ORDER BY time DESC LIMIT 1", influx_db)[0]
    accepted = len(want) + 2 + 2  # the good samples, the odd samples and the odd events
    assert metrics["accepted"] == accepted
    assert metrics["rejected"] == len(BAD)
    assert metrics["received"] == accepted + len(BAD) + metrics["duplicates"]
    assert metrics["messages"] == len(messages) + len(ODD)
    assert metrics["rejected_too_deep"] == 3
