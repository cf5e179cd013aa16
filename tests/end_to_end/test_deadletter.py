"""Dead letters replayed once the mapping is fixed (contract 6.6), while ``cellmon run`` runs.

A live day of three cells at constant voltage and current over the real Mosquitto and
InfluxDB 1.x. For an hour, cell C2's controller names the voltage ``volts``: its samples
are dead-lettered as ``missing_key``. Two of them also carry a voltage no number can be
read from. Then the rules map ``volts`` to ``cell_voltage_v`` and ``cellmon deadletter
replay`` takes the letters through them: the hour is stored once, C2's shift and day are
those of a whole day, the two bad ones stay with their new reason, and a second replay
changes nothing. Every expected value is the trapezoid rule worked by hand: at constant U
and I over covered time h, energy = U·I·h and charge = I·h.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.end_to_end.three_cells import (
    CE,
    CLI,
    CURRENT_KA,
    FARADAY,
    HOUR_10,
    LAST,
    NS,
    STEP_S,
    T0,
    VOLTS,
    energy,
    sec,
)
from tests.harness import DEFAULT_RULES, ROOT, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

WRONG_KEY = HOUR_10  # C2 from 10:00:00 to 10:59:30 sends `volts`
STILL_BAD = (10 * 120 + 10, 10 * 120 + 50)  # and these two a voltage that is no number

FIXED_RULES = DEFAULT_RULES.replace(
    "    kind: telemetry\n",
    "    kind: telemetry\n    fields:\n      cell_voltage_v: volts\n",
    1,
)


def sample(cell: str, k: int) -> dict[str, object]:
    ts = (T0 + k * STEP_S * NS) // 1_000_000
    if cell == "C2" and k in WRONG_KEY:
        volts: object = "4.2 V" if k in STILL_BAD else VOLTS[cell]
        return {"ts": ts, "volts": volts, "line_current_ka": CURRENT_KA}
    return {"ts": ts, "cell_voltage_v": VOLTS[cell], "line_current_ka": CURRENT_KA}


def messages() -> list[tuple[str, bytes]]:
    return [
        (f"smelter/P1/{cell}/telemetry", json.dumps(sample(cell, k)).encode())
        for k in range(LAST + 1)
        for cell in VOLTS
    ]


def stored(influx: InfluxV1, db: str, cell: str) -> int:
    rows = influx.query(f"SELECT count(voltage_v) FROM cell WHERE cell = '{cell}'", db)
    return rows[0]["count"] if rows else 0


def cellmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "deadletter", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def letters(store: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in store.read_text().splitlines()]


def test_dead_letters_of_a_wrong_key_replayed_once_the_mapping_is_fixed(
    tmp_path: Path, plant_broker: Mosquitto, influx_v1: InfluxV1, influx_db: str
) -> None:
    config = write_config(
        tmp_path, mqtt_port=plant_broker.port, influx_url=influx_v1.url, database=influx_db
    )
    store = tmp_path / "state" / "deadletter.jsonl"
    pipeline = Pipeline(config, tmp_path / "cellmon.log")
    pipeline.start()
    publish_all(plant_broker.port, messages())
    wait_for(lambda: sec(influx_v1, influx_db, "C2", "day", T0).get("complete"), 120)
    # the hour of `volts` is a gap of 09:59:30 to 11:00:00, longer than max_gap_s
    live = sec(influx_v1, influx_db, "C2", "day", T0)
    assert live["energy_kwh"] == pytest.approx(energy("C2", (86_400 - 3_630) / 3600), rel=1e-9)
    assert [(e["reason"], e["detail"]) for e in letters(store)] == [
        ("missing_key", "cell_voltage_v: required key is missing")
    ] * 120

    listed = cellmon("list", "--config", str(config), "--reason", "missing_key", "--since", "1h")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1] == "120 dead letters: missing_key 120"
    assert "smelter/P1/C2/telemetry  missing_key" in listed.stdout.splitlines()[0]

    (tmp_path / "rules" / "default.yaml").write_text(FIXED_RULES)
    done = cellmon("replay", "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rewrote P1" in done.stdout
    assert "118 now accepted and removed (118 samples, 0 events), 2 still rejected" in done.stdout

    def whole_day() -> bool:
        got = sec(influx_v1, influx_db, "C2", "day", T0).get("energy_kwh", 0.0)
        return got == pytest.approx(energy("C2", 24), rel=1e-9)

    wait_for(whole_day, 60, pipeline.new_log)
    # a missing sample between two 60 s apart leaves the time covered, at constant U and I
    # the same energy: the day and the 08:00 shift are whole
    for period, start, hours in (("shift", T0 + 8 * 3600 * NS, 8.0), ("day", T0, 24.0)):
        point = sec(influx_v1, influx_db, "C2", period, start)
        assert point["energy_kwh"] == pytest.approx(energy("C2", hours), rel=1e-9)
        assert point["charge_kah"] == pytest.approx(CURRENT_KA * hours, rel=1e-9)
        assert point["hours_covered"] == pytest.approx(hours, rel=1e-9)
        assert point["aluminium_t"] == pytest.approx(FARADAY * CURRENT_KA * hours * CE, rel=1e-9)
        assert point["complete"] is True
    assert stored(influx_v1, influx_db, "C2") == LAST + 1 - len(STILL_BAD)
    assert [(e["reason"], e["detail"]) for e in letters(store)] == [
        ("wrong_type", "volts (as cell_voltage_v): expected a number, got '4.2 V'")
    ] * 2
    before = store.read_bytes()

    again = cellmon("replay", "--config", str(config), "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 now accepted and removed (0 samples, 0 events), 2 still rejected" in again.stdout
    assert store.read_bytes() == before
    assert stored(influx_v1, influx_db, "C2") == LAST + 1 - len(STILL_BAD)
    assert sec(influx_v1, influx_db, "C2", "day", T0)["energy_kwh"] == pytest.approx(
        energy("C2", 24), rel=1e-9
    )
    assert pipeline.terminate() == 0
