import pytest

from collector.decode import Decoded, Decoder, Limits, parse_ts
from collector.topics import TopicRouter, compile_template

NOW_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
NOW_NS = NOW_MS * 1_000_000
TELEMETRY = "smelter/P1/C001/telemetry"
EVENT = "smelter/P1/C001/event"


@pytest.fixture
def decoder() -> Decoder:
    router = TopicRouter(
        [
            compile_template("smelter/{potline}/{cell}/telemetry", "telemetry"),
            compile_template("smelter/{potline}/{cell}/event", "event"),
        ]
    )
    return Decoder(router, Limits(max_payload_bytes=1024))


def decode(decoder: Decoder, topic: str, payload: bytes) -> Decoded:
    out = Decoded()
    decoder.decode(topic, payload, NOW_NS, out)
    return out


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        (NOW_MS, NOW_NS),
        ("2024-03-01T00:00:00Z", NOW_NS),
        ("2024-03-01T08:00:00+08:00", NOW_NS),
        ("2024-03-01T00:00:00.250-00:00", NOW_NS + 250_000_000),
        ("2024-02-29T23:59:59.999999+00:00", NOW_NS - 1_000),
    ],
    ids=["epoch-ms", "zulu", "plus-8", "fraction", "micro"],
)
def test_timestamps(text: object, ns: int) -> None:
    assert parse_ts(text) == ns


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300}',
            ("P1", "C001", NOW_NS, 4.2, 300.0, None),
        ),
        (
            b'{"ts": "2024-03-01T08:00:00+08:00", "cell_voltage_v": 4, "line_current_ka": 301.5,'
            b' "bath_temp_c": 955, "noise_uohm": 7.5, "pos_mm": 12, "status": "ok"}',
            (
                "P1",
                "C001",
                NOW_NS,
                4.0,
                301.5,
                {"bath_temp_c": 955.0, "noise_uohm": 7.5, "pos_mm": 12.0},
            ),
        ),
    ],
    ids=["minimal", "extras-as-floats-strings-ignored"],
)
def test_good_telemetry(decoder: Decoder, payload: bytes, expected: tuple) -> None:
    out = decode(decoder, TELEMETRY, payload)
    assert out.rejections == []
    assert out.samples == [expected]


BAD = [
    ("not-json", TELEMETRY, b"{nope", "not_json"),
    ("not-utf8", TELEMETRY, b'{"ts": "\xff\xfe"}', "not_utf8"),
    ("not-object", TELEMETRY, b"42", "not_object"),
    ("bad-topic", "smelter/P1/telemetry", b"{}", "bad_topic"),
    ("topic-level-chars", "smelter/P 1/C001/telemetry", b"{}", "bad_topic"),
    ("too-large", TELEMETRY, b'{"x": "' + b"a" * 2000 + b'"}', "too_large"),
    ("missing-ts", TELEMETRY, b'{"cell_voltage_v": 4.2, "line_current_ka": 300}', "missing_key"),
    ("missing-voltage", TELEMETRY, b'{"ts": 1709251200000, "line_current_ka": 300}', "missing_key"),
    (
        "voltage-string",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": "4.2", "line_current_ka": 300}',
        "wrong_type",
    ),
    (
        "voltage-bool",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": true, "line_current_ka": 300}',
        "wrong_type",
    ),
    (
        "temp-string",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300, '
        b'"bath_temp_c": "hot"}',
        "wrong_type",
    ),
    (
        "ts-float",
        TELEMETRY,
        b'{"ts": 1709251200000.5, "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "wrong_type",
    ),
    (
        "nan",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": NaN, "line_current_ka": 300}',
        "non_finite",
    ),
    (
        "overflow",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 1e999}',
        "non_finite",
    ),
    (
        "extra-infinity",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300, "x": Infinity}',
        "non_finite",
    ),
    (
        "voltage-high",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 100.5, "line_current_ka": 300}',
        "out_of_bounds",
    ),
    (
        "current-negative",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": -1}',
        "out_of_bounds",
    ),
    (
        "future",
        TELEMETRY,
        b'{"ts": 1709251501000, "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "future_ts",
    ),
    (
        "clock-unset",
        TELEMETRY,
        b'{"ts": 0, "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "out_of_bounds",
    ),
    (
        "no-offset",
        TELEMETRY,
        b'{"ts": "2024-03-01T00:00:00", "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "bad_ts",
    ),
    ("event-no-type", EVENT, b'{"ts": 1709251200000}', "missing_key"),
    (
        "anode-zero",
        EVENT,
        b'{"ts": 1709251200000, "type": "anode_change", "anode": 0, "block": "590"}',
        "out_of_bounds",
    ),
    (
        "anode-string",
        EVENT,
        b'{"ts": 1709251200000, "type": "anode_change", "anode": "3", "block": "590"}',
        "wrong_type",
    ),
    (
        "block-number",
        EVENT,
        b'{"ts": 1709251200000, "type": "anode_change", "anode": 3, "block": 590}',
        "wrong_type",
    ),
    (
        "tap-zero",
        EVENT,
        b'{"ts": 1709251200000, "type": "metal_tap", "metal_kg": 0}',
        "out_of_bounds",
    ),
    ("tap-missing", EVENT, b'{"ts": 1709251200000, "type": "metal_tap"}', "missing_key"),
]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_rejections(decoder: Decoder, topic: str, payload: bytes, reason: str) -> None:
    out = decode(decoder, topic, payload)
    assert out.samples == [] and out.events == []
    assert [r.reason for r in out.rejections] == [reason]
    assert out.rejections[0].topic == topic
    assert out.rejections[0].payload == payload
    assert out.rejections[0].detail


def test_array_keeps_good_objects_and_rejects_bad_ones_one_by_one(decoder: Decoder) -> None:
    payload = (
        b'[{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300},'
        b' {"ts": 1709251201000, "cell_voltage_v": NaN, "line_current_ka": 300},'
        b' "junk",'
        b' {"ts": 1709251202000, "cell_voltage_v": 4.3, "line_current_ka": 299}]'
    )
    out = decode(decoder, TELEMETRY, payload)
    assert [s[2] for s in out.samples] == [NOW_NS, NOW_NS + 2_000_000_000]
    assert [r.reason for r in out.rejections] == ["non_finite", "not_object"]
    assert b"NaN" in out.rejections[0].payload
    assert out.rejections[1].payload == b'"junk"'


def test_events(decoder: Decoder) -> None:
    payload = (
        b'[{"ts": 1709251200000, "type": "anode_change", "anode": 7, "block": "590",'
        b' "butt_mm": 150}, {"ts": 1709251200000, "type": "metal_tap", "metal_kg": 2250.5},'
        b' {"ts": 1709251200000, "type": "feeder_check", "note": "ok"}]'
    )
    out = decode(decoder, EVENT, payload)
    assert out.rejections == []
    assert out.events == [
        ("P1", "C001", NOW_NS, "anode_change", {"anode": 7, "block": "590", "butt_mm": 150}),
        ("P1", "C001", NOW_NS, "metal_tap", {"metal_kg": 2250.5}),
        ("P1", "C001", NOW_NS, "feeder_check", {"note": "ok"}),
    ]


def test_topic_route_is_cached(decoder: Decoder) -> None:
    router = decoder.router
    first = router.route(TELEMETRY)
    assert first is router.route(TELEMETRY)
    assert (first.kind, first.potline, first.cell) == ("telemetry", "P1", "C001")
    assert router.templates[0].subscription == "smelter/+/+/telemetry"
