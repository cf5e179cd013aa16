"""Input mapping: a controller's own layout decodes to exactly what the contract's gives.

Each case is an input rule in YAML, loaded by the real config loader, and payloads worked
out by hand in both layouts.
"""

from pathlib import Path

import orjson
import pytest

from collector.build import decoder as build_decoder
from collector.config.loader import load_config
from collector.source.decode import Decoded, Decoder

NOW_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
NOW_NS = NOW_MS * 1_000_000
T_S = NOW_MS // 1000 - 60
T_NS = T_S * 1_000_000_000

CONFIG = """\
plant:
  potlines:
    - {id: P1, baseline_sec_kwh_per_t: 13450}
    - {id: L2, baseline_sec_kwh_per_t: 13450}
"""
RULES = """\
inputs:
  - name: contract
    topic: smelter/{potline}/{cell}/telemetry
    kind: telemetry
  - name: pots
    topic: plant/{potline}/pots/{cell}/data
    kind: telemetry
    path: body.samples
    fields:
      ts: {key: time, unit: s}
      cell_voltage_v: {key: meas.U, unit: mV}
      line_current_ka: {key: I, unit: A}
      bath_temp_c: {key: temp_K, unit: K}
      noise_uohm: {key: noise, scale: 0.5, offset: 1}
      pressure_kpa: p
  - name: gateway
    topic: plant/{potline}/gateway
    kind: telemetry
    path: pots
    fields:
      cell: pot
      cell_voltage_v: {key: U, unit: mV}
      line_current_ka: {key: I, unit: kA}
  - name: line-gateway
    topic: plant/line-gateway
    kind: telemetry
    path: pots
    fields:
      potline: line
      cell: pot
      cell_voltage_v: {key: U, unit: mV}
      line_current_ka: {key: I, unit: kA}
  - name: pot-events
    topic: plant/{potline}/pots/{cell}/log
    kind: event
    fields:
      type: code
      metal_kg: {key: tonnes, unit: t}
    types: {AC: anode_change, TAP: metal_tap}
"""


@pytest.fixture
def decoder(tmp_path: Path) -> Decoder:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(RULES)
    (tmp_path / "cellmon.yaml").write_text(CONFIG)
    return build_decoder(load_config(tmp_path / "cellmon.yaml"))


def decode(decoder: Decoder, topic: str, doc: object) -> Decoded:
    out = Decoded()
    decoder.decode(topic, orjson.dumps(doc), NOW_NS, out)
    return out


def test_mapped_sample_equals_the_contract_sample(decoder: Decoder) -> None:
    theirs = {
        "body": {
            "samples": [
                {
                    "time": T_S,
                    "meas": {"U": 4123},
                    "I": 400125,
                    "temp_K": 1233.15,
                    "noise": 10,
                    "p": 7,
                },
            ]
        }
    }
    ours = {
        "ts": T_S * 1000,
        "cell_voltage_v": 4.123,
        "line_current_ka": 400.125,
        "bath_temp_c": 960.0,
        "noise_uohm": 6.0,  # 10 * 0.5 + 1
        "pressure_kpa": 7,
    }
    mapped = decode(decoder, "plant/P1/pots/C007/data", theirs)
    direct = decode(decoder, "smelter/P1/C007/telemetry", ours)
    assert mapped.rejections == []
    assert direct.rejections == []
    ((potline, cell, ts, v, i, extra, _),) = mapped.samples
    assert (potline, cell, ts, v, i) == ("P1", "C007", T_NS, 4.123, 400.125)
    assert extra == {"bath_temp_c": pytest.approx(960.0), "noise_uohm": 6.0, "pressure_kpa": 7.0}
    assert mapped.samples[0][:5] == direct.samples[0][:5]


def test_an_array_at_the_path_gives_one_sample_per_object(decoder: Decoder) -> None:
    samples = [{"time": T_S + k, "meas": {"U": 4100 + k}, "I": 400000} for k in range(3)]
    out = decode(decoder, "plant/P1/pots/C1/data", {"body": {"samples": samples}})
    assert [(s[2], s[3]) for s in out.samples] == [
        (T_NS, 4.1),
        (T_NS + 10**9, 4.101),
        (T_NS + 2 * 10**9, 4.102),
    ]


def test_float_seconds_are_kept_to_the_millisecond(decoder: Decoder) -> None:
    doc = {"body": {"samples": {"time": T_S + 0.25, "meas": {"U": 4100}, "I": 400000}}}
    (sample,) = decode(decoder, "plant/P1/pots/C1/data", doc).samples
    assert sample[2] == T_NS + 250_000_000


def test_mapped_events_rename_type_and_convert_units(decoder: Decoder) -> None:
    out = decode(
        decoder, "plant/P1/pots/C1/log", {"ts": NOW_MS - 1000, "code": "TAP", "tonnes": 1.5}
    )
    assert out.rejections == []
    assert out.events == [("P1", "C1", NOW_NS - 10**9, "metal_tap", {"metal_kg": 1500.0})]
    other = decode(decoder, "plant/P1/pots/C1/log", {"ts": NOW_MS, "code": "burner_on"})
    assert other.events[0][3] == "burner_on"  # a type not in `types` stays as it is


@pytest.mark.parametrize(
    ("doc", "reason", "detail"),
    [
        ({"body": {}}, "missing_key", "body.samples: the input's path is not in the payload"),
        (
            {"body": {"samples": {"time": T_S, "I": 400000}}},
            "missing_key",
            "meas.U (as cell_voltage_v): required key is missing",
        ),
        (
            {"body": {"samples": {"time": T_S, "meas": {"U": "4100"}, "I": 400000}}},
            "wrong_type",
            "meas.U (as cell_voltage_v): expected a number, got '4100'",
        ),
        (
            {"body": {"samples": {"time": T_S, "meas": {"U": 4100}, "I": 2_000_000}}},
            "out_of_bounds",
            "I (as line_current_ka): 2000.0 outside 0..1000",
        ),
        (
            {"body": {"samples": {"time": "yesterday", "meas": {"U": 4100}, "I": 1}}},
            "bad_ts",
            "time (as ts): not an RFC 3339 timestamp: 'yesterday'",
        ),
    ],
    ids=["no-path", "missing", "string", "bounds", "bad-ts"],
)
def test_rejections_name_the_controllers_key(
    decoder: Decoder, doc: object, reason: str, detail: str
) -> None:
    out = decode(decoder, "plant/P1/pots/C1/data", doc)
    assert out.samples == []
    ((topic, got_reason, got_detail, payload),) = [
        (r.topic, r.reason, r.detail, r.payload) for r in out.rejections
    ]
    assert (topic, got_reason, got_detail) == ("plant/P1/pots/C1/data", reason, detail)
    assert orjson.loads(payload) == doc  # the controller's own payload is kept


def test_a_gateway_names_each_cell_in_the_payload(decoder: Decoder) -> None:
    doc = {
        "pots": [
            {"ts": NOW_MS - 1000, "pot": "C117", "U": 4150, "I": 400.5},
            {"ts": NOW_MS - 1000, "pot": 118, "U": 4200, "I": 400.5},  # a number is an id too
            {"ts": NOW_MS - 1000, "pot": "C 119", "U": 4200, "I": 400.5},
            {"ts": NOW_MS - 1000, "U": 4200, "I": 400.5},
        ]
    }
    out = decode(decoder, "plant/L2/gateway", doc)
    ts = NOW_NS - 10**9
    assert out.samples == [
        ("L2", "C117", ts, 4.15, 400.5, None, None),  # objects of an array: untimed
        ("L2", "118", ts, 4.2, 400.5, None, None),
    ]
    assert [(r.reason, r.detail) for r in out.rejections] == [
        ("bad_id", "pot (as cell): 'C 119' is not an id (1 to 32 of A-Z a-z 0-9 _ -)"),
        ("missing_key", "pot (as cell): required key is missing"),
    ]


def test_another_instances_potline_is_foreign_neither_stored_nor_dead_lettered(
    decoder: Decoder,
) -> None:
    """Contract 5.1: where the payload names the potline, the subscription cannot exclude
    the others: their objects are counted, not stored, not rejected."""
    doc = {
        "pots": [
            {"ts": NOW_MS - 1000, "line": "P1", "pot": "C1", "U": 4150, "I": 400.5},
            {"ts": NOW_MS - 1000, "line": "P7", "pot": "C1", "U": 4150, "I": 400.5},
            {"ts": "garbage", "line": "P7", "pot": "C2", "U": 4150, "I": 400.5},
        ]
    }
    out = decode(decoder, "plant/line-gateway", doc)
    assert [(s[0], s[1]) for s in out.samples] == [("P1", "C1")]
    assert out.rejections == []
    assert out.foreign == 2


def test_subscriptions_name_each_owned_potline(decoder: Decoder) -> None:
    assert sorted(decoder.router.subscriptions()) == [
        "plant/L2/gateway",
        "plant/L2/pots/+/data",
        "plant/L2/pots/+/log",
        "plant/P1/gateway",
        "plant/P1/pots/+/data",
        "plant/P1/pots/+/log",
        "plant/line-gateway",  # the payload names the potline: one filter for all
        "smelter/L2/+/telemetry",
        "smelter/P1/+/telemetry",
    ]
