"""A controller with its own layout gives the same points as one speaking the contract.

The same twelve hours of a simulated potline and the same events are published three times over
the real Mosquitto: in the contract's layout to one ``cellmon run``, and to another in a
foreign layout (other topics, other key names, millivolts, amperes, nano-ohms, epoch
seconds, samples nested in an envelope, event codes and tonnes) that its input rules map.
A third run takes the same data from a potline gateway that sends every pot of an instant
in one message, each object naming its pot. Each run writes its own InfluxDB database; the
``cell``, ``sec_cell`` and event points of all three must be the same.

The values are chosen on the grids both layouts can carry exactly (whole mV, A and nΩ,
binary fractions of a tonne), so the raw points must be equal bit for bit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from simulator.payloads import Columns, PotlineSim
from tests.harness import DEFAULT_RULES, Pipeline, publish_all, wait_for, write_config
from tests.servers import InfluxV1, Mosquitto

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
CELLS = 4
STEPS = 12 * 3600 // 10
ARRAY = 60

FOREIGN_RULES = """\
inputs:
  - name: pot-data
    topic: plant/{potline}/pots/{cell}/data
    kind: telemetry
    path: batch.samples
    fields:
      ts: {key: t, unit: s}
      cell_voltage_v: {key: U_mV, unit: mV}
      line_current_ka: {key: I_A, unit: A}
      bath_temp_c: bath.T
      noise_uohm: {key: noise_nOhm, unit: nOhm}
  - name: pot-log
    topic: plant/{potline}/pots/{cell}/log
    kind: event
    fields:
      type: code
      anode: pos
      block: blk
      metal_kg: {key: tonnes, unit: t}
    types: {AC: anode_change, TAP: metal_tap}
"""


GATEWAY_RULES = """\
inputs:
  - name: gateway
    topic: plant/{potline}/gateway
    kind: telemetry
    path: pots
    fields:
      cell: pot
      ts: {key: t, unit: s}
      cell_voltage_v: {key: U_mV, unit: mV}
      line_current_ka: {key: I_A, unit: A}
      bath_temp_c: T
      noise_uohm: {key: n, unit: nOhm}
""" + FOREIGN_RULES[FOREIGN_RULES.index("  - name: pot-log") :]
"""A potline gateway: one message per instant with every pot in it, named in the payload."""


def start_ns() -> int:
    day = datetime.now(ZONE).date() - timedelta(days=2)
    return int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp()) * NS


@pytest.fixture(scope="module")
def columns() -> Columns:
    """Simulated telemetry moved onto the grid of whole mV, A and nΩ."""
    sim = PotlineSim("P1", cells=CELLS, seed=3, start_ns=start_ns(), interval_s=10)
    c = sim.columns(0, STEPS)
    return Columns(
        cells=c.cells,
        ts_ns=c.ts_ns,
        line_current_ka=np.round(c.line_current_ka, 3),
        cell_voltage_v=np.round(c.cell_voltage_v, 3),
        bath_temp_c=c.bath_temp_c,
        noise_uohm=np.round(c.noise_uohm, 3),
    )


def events(first_ns: int) -> list[tuple[str, int, str, dict]]:
    """(cell, ts ms, type, data) in the contract's terms: taps and an anode change."""
    ms = first_ns // 1_000_000
    hour = 3_600_000
    return [
        ("C001", ms + 2 * hour, "metal_tap", {"metal_kg": 1500.0}),
        ("C002", ms + 3 * hour, "metal_tap", {"metal_kg": 1750.0}),
        ("C001", ms + 9 * hour, "metal_tap", {"metal_kg": 1625.0}),
        ("C003", ms + 4 * hour, "anode_change", {"anode": 7, "block": "590"}),
    ]


def contract_messages(cols: Columns) -> list[tuple[str, bytes]]:
    telemetry = [(f"smelter/P1/{cols.cells[c]}/telemetry", body) for c, body in cols.encode(ARRAY)]
    log = [
        (f"smelter/P1/{cell}/event", orjson.dumps({"ts": ts, "type": kind, **data}))
        for cell, ts, kind, data in events(int(cols.ts_ns[0]))
    ]
    return telemetry + log


def in_controller_units(cols: Columns) -> tuple[list, list, list, list, list]:
    """Epoch s, whole A, whole mV, whole nΩ and °C, as the other controllers send them."""
    return (
        (cols.ts_ns // NS).tolist(),
        np.rint(cols.line_current_ka * 1000).astype(np.int64).tolist(),
        np.rint(cols.cell_voltage_v * 1000).astype(np.int64).tolist(),
        np.rint(cols.noise_uohm * 1000).astype(np.int64).tolist(),
        cols.bath_temp_c.tolist(),
    )


def foreign_messages(cols: Columns) -> list[tuple[str, bytes]]:
    """The same data as a foreign controller sends it, converted here by hand."""
    t_s, amps, millivolts, nano_ohms, baths = in_controller_units(cols)
    messages = []
    for first in range(0, len(t_s), ARRAY):
        for c, cell in enumerate(cols.cells):
            samples = [
                {
                    "t": t_s[k],
                    "U_mV": millivolts[k][c],
                    "I_A": amps[k],
                    "bath": {"T": baths[k][c]},
                    "noise_nOhm": nano_ohms[k][c],
                }
                for k in range(first, min(first + ARRAY, len(t_s)))
            ]
            body = {"batch": {"pot": cell, "samples": samples}}
            messages.append((f"plant/P1/pots/{cell}/data", orjson.dumps(body)))
    codes = {"metal_tap": "TAP", "anode_change": "AC"}
    for cell, ts, kind, data in events(int(cols.ts_ns[0])):
        body: dict = {"ts": ts, "code": codes[kind]}
        if kind == "metal_tap":
            body["tonnes"] = data["metal_kg"] / 1000  # 1.5, 1.75, 1.625: exact in binary
        else:
            body |= {"pos": data["anode"], "blk": data["block"]}
        messages.append((f"plant/P1/pots/{cell}/log", orjson.dumps(body)))
    return messages


def gateway_messages(cols: Columns) -> list[tuple[str, bytes]]:
    """Each instant's samples of every cell in one message; the events as the foreign ones."""
    t_s, amps, millivolts, nano_ohms, baths = in_controller_units(cols)
    messages = []
    for k, t in enumerate(t_s):
        pots = [
            {
                "pot": cell,
                "t": t,
                "U_mV": millivolts[k][c],
                "I_A": amps[k],
                "T": baths[k][c],
                "n": nano_ohms[k][c],
            }
            for c, cell in enumerate(cols.cells)
        ]
        messages.append(("plant/P1/gateway", orjson.dumps({"pots": pots})))
    return messages + [m for m in foreign_messages(cols) if m[0].endswith("/log")]


def run(
    directory: Path, broker: Mosquitto, influx: InfluxV1, db: str, rules: str, messages: list
) -> None:
    influx.create_database(db)
    config = write_config(
        directory, mqtt_port=broker.port, influx_url=influx.url, database=db, rules=rules
    )
    pipeline = Pipeline(config, directory / "cellmon.log")
    pipeline.start()
    publish_all(broker.port, messages)
    wait_for(lambda: count(influx, db) >= STEPS * CELLS, 120, pipeline.new_log)
    assert pipeline.terminate() == 0  # writes the open periods' KPIs


def count(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return rows[0]["count"] if rows else 0


@pytest.fixture(scope="module")
def databases(
    tmp_path_factory: pytest.TempPathFactory,
    plant_broker: Mosquitto,
    influx_v1: InfluxV1,
    columns: Columns,
) -> dict[str, str]:
    """Layout name → the database its run wrote."""
    layouts = {
        "contract": (DEFAULT_RULES, contract_messages(columns)),
        "foreign": (FOREIGN_RULES, foreign_messages(columns)),
        "gateway": (GATEWAY_RULES, gateway_messages(columns)),
    }
    for name, (rules, messages) in layouts.items():
        directory = tmp_path_factory.mktemp(name)
        run(directory, plant_broker, influx_v1, f"layout_{name}", rules, messages)
    return {name: f"layout_{name}" for name in layouts}


def points(influx: InfluxV1, db: str, measurement: str) -> dict[tuple, dict]:
    rows = influx.query(f"SELECT * FROM {measurement} GROUP BY *", db)
    return {
        (*sorted((k, v) for k, v in r.items() if isinstance(v, str)), r["time"]): r for r in rows
    }


def both(influx: InfluxV1, databases: dict[str, str], layout: str, measurement: str):
    """(the contract layout's points, the other layout's)."""
    return (
        points(influx, databases["contract"], measurement),
        points(influx, databases[layout], measurement),
    )


LAYOUTS = pytest.mark.parametrize("layout", ["foreign", "gateway"])


@LAYOUTS
def test_raw_cell_points_are_identical(
    databases: dict[str, str], influx_v1: InfluxV1, columns: Columns, layout: str
) -> None:
    contract, other = both(influx_v1, databases, layout, "cell")
    assert len(contract) == STEPS * CELLS
    assert other == contract
    c001 = [r for r in contract.values() if r["cell"] == "C001"]
    first = min(c001, key=lambda r: r["time"])
    assert (first["time"], first["voltage_v"], first["current_ka"]) == (
        int(columns.ts_ns[0]),
        float(columns.cell_voltage_v[0, 0]),
        float(columns.line_current_ka[0]),
    )


@LAYOUTS
def test_kwh_per_tonne_points_are_the_same(
    databases: dict[str, str], influx_v1: InfluxV1, layout: str
) -> None:
    contract, other = both(influx_v1, databases, layout, "sec_cell")
    assert {r["period"] for r in contract.values()} == {"shift", "day", "month"}
    assert other.keys() == contract.keys()
    for key, want in contract.items():
        got = other[key]
        assert got.keys() == want.keys()
        for field, value in want.items():
            if isinstance(value, float):  # batches may cut the sums in other places
                assert got[field] == pytest.approx(value, rel=1e-9), (key, field)
            else:
                assert got[field] == value, (key, field)
    tapped = [r for r in contract.values() if r["cell"] == "C001" and r["period"] == "month"]
    assert tapped[0]["metal_t"] == 1.5 + 1.625  # the taps count in the month's figures


@LAYOUTS
@pytest.mark.parametrize("measurement", ["metal_tap", "anode_change", "cell_event"])
def test_event_points_are_identical(
    databases: dict[str, str], influx_v1: InfluxV1, measurement: str, layout: str
) -> None:
    contract, other = both(influx_v1, databases, layout, measurement)
    assert contract
    assert other == contract
