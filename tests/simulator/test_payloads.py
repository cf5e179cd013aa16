import math
import re

import orjson
import pytest

from simulator.payloads import PotlineSim
from tests.simulator.sims import DAY, T0, S, all_payloads, sim

TELEMETRY_KEYS = {"ts", "cell_voltage_v", "line_current_ka", "bath_temp_c", "noise_uohm"}
CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

# ---- contract shape --------------------------------------------------------------------


def test_telemetry_objects_have_the_contract_form() -> None:
    s = sim(cells=5, interval_s=1.0)
    steps = list(s.telemetry(T0, T0 + 120 * S))
    assert [step.ts_ns for step in steps] == [T0 + k * S for k in range(120)]
    assert s.cell_ids == ("C001", "C002", "C003", "C004", "C005")
    assert all(CELL_ID.fullmatch(cell) for cell in s.cell_ids)
    for step in steps:
        assert len(step.payloads) == 5
        for payload in step.payloads:
            assert set(payload) == TELEMETRY_KEYS
            assert type(payload["ts"]) is int
            assert payload["ts"] * 1_000_000 == step.ts_ns
            for key in TELEMETRY_KEYS - {"ts"}:
                assert type(payload[key]) is float
                assert math.isfinite(payload[key])


def test_events_have_the_contract_form() -> None:
    events = sim(cells=10).events(T0, T0 + 5 * DAY)
    kinds = {e.payload["type"] for e in events}
    assert kinds == {"anode_change", "metal_tap"}
    for e in events:
        p = e.payload
        assert type(p["ts"]) is int
        assert p["ts"] * 1_000_000 == e.ts_ns
        if p["type"] == "anode_change":
            assert set(p) == {"ts", "type", "anode", "block", "butt_mm", "crew"}
            # crews take turns by 8-hour shifts (UTC): A, B, C, D, A, ...
            assert p["crew"] == "ABCD"[(p["ts"] // (8 * 3_600_000)) % 4]
            assert type(p["anode"]) is int
            assert 1 <= p["anode"] <= 40
            assert p["block"] in {"590", "560"}
            assert type(p["butt_mm"]) is int
        else:
            assert set(p) == {"ts", "type", "metal_kg"}
            assert type(p["metal_kg"]) is float
            assert p["metal_kg"] > 0


def test_events_are_in_time_order_and_within_the_window() -> None:
    t1 = T0 + 20 * DAY
    times = [e.ts_ns for e in sim(cells=20).events(T0, t1)]
    assert times == sorted(times)
    assert times[0] >= T0
    assert times[-1] < t1


def test_stream_interleaves_telemetry_and_events_in_time_order() -> None:
    s = sim(cells=8, interval_s=30.0)
    t1 = T0 + 3 * DAY
    records = list(s.stream(T0, t1))
    times = [r.ts_ns for r in records]
    assert times == sorted(times)
    events = [r for r in records if r.kind == "event"]
    assert [(r.ts_ns, r.cell, r.payload) for r in events] == [tuple(e) for e in s.events(T0, t1)]
    telemetry = [r.payload for r in records if r.kind == "telemetry"]
    assert telemetry == all_payloads(s, t1)
    assert len(events) > 0


# ---- fast columnar path ----------------------------------------------------------------


def test_columns_hold_the_same_values_as_the_payloads() -> None:
    s = sim(cells=3, interval_s=1.0)
    cols = s.columns(0, 50)
    payloads = all_payloads(s, T0 + 50 * S)
    assert cols.cell_voltage_v.shape == (50, 3)
    assert cols.line_current_ka.shape == (50,)
    assert [p["cell_voltage_v"] for p in payloads] == cols.cell_voltage_v.ravel().tolist()
    assert [p["line_current_ka"] for p in payloads[::3]] == cols.line_current_ka.tolist()


def test_an_empty_window_has_no_samples() -> None:
    s = sim()
    assert list(s.telemetry(T0 + 1, T0 + 60 * S)) == []
    assert len(s.columns(5, 0)) == 0
    assert list(s.stream(T0, T0)) == []


def test_encoded_payloads_decode_to_the_payload_objects() -> None:
    s = sim(cells=3, interval_s=1.0)
    cols = s.columns(0, 7)
    rows = cols.payloads()
    singles = cols.encode()
    assert [(c, orjson.loads(raw)) for c, raw in singles] == [
        (c, rows[k][c]) for k in range(7) for c in range(3)
    ]
    arrays = cols.encode(array_size=3)
    # 7 steps in arrays of 3: two full arrays and one of 1 per cell, each cell in turn
    assert [(c, len(orjson.loads(raw))) for c, raw in arrays] == [
        (c, n) for n in (3, 3, 1) for c in range(3)
    ]
    assert orjson.loads(arrays[1][1]) == [rows[0][1], rows[1][1], rows[2][1]]


# ---- time grid -------------------------------------------------------------------------


def test_interval_must_be_whole_milliseconds() -> None:
    with pytest.raises(ValueError, match="whole number of milliseconds"):
        PotlineSim("P1", 2, start_ns=T0, interval_s=0.0005)
