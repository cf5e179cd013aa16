import pytest

from collector.source import decode as decode_module
from collector.source.decode import Decoded, Decoder, IngestConfig
from collector.source.payload import parse_ts
from collector.source.topics import TopicRouter, compile_template

NOW_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
NOW_NS = NOW_MS * 1_000_000
TELEMETRY = "smelter/P1/C001/telemetry"
EVENT = "smelter/P1/C001/event"

OWNED = frozenset({"P1"})  # the potlines the instance owns (contract 5.1)


def contract_decoder(ingest: IngestConfig) -> Decoder:
    router = TopicRouter(
        [
            compile_template("smelter/{potline}/{cell}/telemetry", "telemetry"),
            compile_template("smelter/{potline}/{cell}/event", "event"),
        ],
        OWNED,
    )
    return Decoder(router, ingest)


@pytest.fixture
def decoder() -> Decoder:
    return contract_decoder(IngestConfig(max_payload_bytes=1024))


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
            ("P1", "C001", NOW_NS, 4.2, 300.0, None, 0),
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
                0,  # a single object is live: arrival − ts in ms (decoded at NOW)
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
        "out_of_bounds",
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
    (
        "week-date",
        TELEMETRY,
        b'{"ts": "2009-W07-2T10:00:00+08:00", "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "bad_ts",
    ),
    (
        "basic-format",
        TELEMETRY,
        b'{"ts": "20240301T000000Z", "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "bad_ts",
    ),
    (
        "month-13",
        TELEMETRY,
        b'{"ts": "2024-13-01T00:00:00Z", "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "bad_ts",
    ),
    (
        "ts-before-2000",
        TELEMETRY,
        b'{"ts": "1999-12-31T23:59:59Z", "cell_voltage_v": 4.2, "line_current_ka": 300}',
        "out_of_bounds",
    ),
    (
        "ts-400-digits",
        TELEMETRY,
        b'{"ts": 1%s, "cell_voltage_v": 4.2, "line_current_ka": 300}' % (b"0" * 400),
        "out_of_bounds",
    ),
    (
        "voltage-400-digits",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 1%s, "line_current_ka": 300}' % (b"0" * 400),
        "out_of_bounds",
    ),
    (
        "extra-400-digits",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300, "x": -1%s}'
        % (b"0" * 400),
        "out_of_bounds",
    ),
    (
        "extra-key-newline",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300, "a\\nb": 1}',
        "bad_key",
    ),
    (
        "extra-key-empty",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300, "": 1}',
        "bad_key",
    ),
    (
        "extra-key-surrogate",
        TELEMETRY,
        b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300, "\\ud800": 1}',
        "bad_utf8",
    ),
    ("event-no-type", EVENT, b'{"ts": 1709251200000}', "missing_key"),
    ("type-newline", EVENT, b'{"ts": 1709251200000, "type": "a\\nb"}', "bad_key"),
    ("field-tab", EVENT, b'{"ts": 1709251200000, "type": "note", "a\\tb": 1}', "bad_key"),
    ("field-time", EVENT, b'{"ts": 1709251200000, "type": "note", "time": 1}', "bad_key"),
    (
        "string-control",
        EVENT,
        b'{"ts": 1709251200000, "type": "note", "text": "bell\\u0007"}',
        "bad_key",
    ),
    (
        "string-surrogate",
        EVENT,
        b'{"ts": 1709251200000, "type": "note", "text": "\\udc00x"}',
        "bad_utf8",
    ),
    (
        "field-out-of-range",
        EVENT,
        b'{"ts": 1709251200000, "type": "note", "x": 1e400}',
        "out_of_bounds",
    ),
    (
        "nested-out-of-range",
        EVENT,
        b'{"ts": 1709251200000, "type": "note", "detail": {"n": [1e400]}}',
        "out_of_bounds",
    ),
    (
        "block-newline",
        EVENT,
        b'{"ts": 1709251200000, "type": "anode_change", "anode": 3, "block": "59\\r0"}',
        "bad_key",
    ),
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
        "crew-number",
        EVENT,
        b'{"ts": 1709251200000, "type": "anode_change", "anode": 3, "block": "590", "crew": 2}',
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
    assert out.samples == []
    assert out.events == []
    assert [r.reason for r in out.rejections] == [reason]
    assert out.rejections[0].topic == topic
    assert out.rejections[0].payload == payload
    assert out.rejections[0].detail


@pytest.fixture
def roomy() -> Decoder:
    """A decoder with the contract's 256 KiB payload limit, for the deep payloads."""
    return contract_decoder(IngestConfig())


def nested(depth: int, open_: bytes = b'{"a":', close: bytes = b"}") -> bytes:
    """An event whose ``detail`` is ``depth`` levels deep, the event object counting as one."""
    inner = open_ * (depth - 2) + b'{"x": 1}' + close * (depth - 2)
    return b'{"ts": 1709251200000, "type": "note", "detail": %s}' % inner


@pytest.mark.parametrize("depth", [33, 300, 40_000])
def test_deeper_than_32_levels_is_too_deep(roomy: Decoder, depth: int) -> None:
    out = decode(roomy, EVENT, nested(depth))
    assert out.events == []
    assert [r.reason for r in out.rejections] == ["too_deep"]


def test_32_levels_are_accepted_and_strings_do_not_count(roomy: Decoder) -> None:
    deep = nested(32)
    out = decode(roomy, EVENT, deep.replace(b'"x"', b'"{{{{[[[[{{{{[[[[{{{{"'))
    assert out.rejections == []
    assert len(out.events) == 1


def test_arrays_100000_deep_are_too_deep(roomy: Decoder) -> None:
    out = decode(roomy, TELEMETRY, b"[" * 100_000 + b"]" * 100_000)
    assert [r.reason for r in out.rejections] == ["too_deep"]


def test_deep_and_non_finite_is_too_deep_not_a_recursion_error(roomy: Decoder) -> None:
    payload = b"[" * 5000 + b"NaN" + b"]" * 5000
    out = decode(roomy, TELEMETRY, payload)
    assert [r.reason for r in out.rejections] == ["too_deep"]


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2024-03-01t00:00:00z", NOW_NS),
        ("2024-03-01T00:00:00.123456789Z", NOW_NS + 123_456_789),
        ("2024-03-01T00:00:00.1234567891234Z", NOW_NS + 123_456_789),
        ("2024-02-29T19:00:00-05:00", NOW_NS),
    ],
    ids=["lower-case", "nanoseconds", "beyond-ns-truncated", "minus-5"],
)
def test_rfc3339_forms(text: str, ns: int) -> None:
    assert parse_ts(text) == ns


def test_string_keys_that_line_protocol_can_carry_are_accepted(decoder: Decoder) -> None:
    payload = (
        b'{"ts": 1709251200000, "type": "note", "a b,c=d\\"q": "590\\\\",'
        b' "emoji \xf0\x9f\x94\xa5": "\xe7\x94\xb5", "x\\\\y": 1.5}'
    )
    out = decode(decoder, EVENT, payload)
    assert out.rejections == []
    assert out.events[0][4] == {'a b,c=d"q': "590\\", "emoji \U0001f525": "\u7535", "x\\y": 1.5}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b'{"ts": 1709251200000, "type": "note", "x\\\\": 1.5}', "ends with a backslash"),
        (b'{"ts": 1709251200000, "type": "note", "x\\\\ y": 1.5}', "odd run of backslashes"),
        (
            b'{"ts": 1709251200000, "type": "anode_change", "anode": 3, "block": "590\\\\"}',
            "block: tag value '590\\\\' ends with a backslash",
        ),
        (b'{"ts": 1709251200000, "type": "note", "d": {"k": ["\\u007f"]}}', "control"),
    ],
    ids=["field-key", "field-key-before-space", "block", "nested-control"],
)
def test_what_influxdb_cannot_store_exactly_is_bad_key(
    decoder: Decoder, payload: bytes, detail: str
) -> None:
    """InfluxDB 1.x cannot store a name ending in a backslash under that name (lineproto)."""
    out = decode(decoder, EVENT, payload)
    assert [r.reason for r in out.rejections] == ["bad_key"]
    assert detail in out.rejections[0].detail


def test_a_surrogate_in_an_array_rejects_that_object_only(decoder: Decoder) -> None:
    payload = (
        b'[{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300, "x": NaN},'
        b' {"ts": 1709251201000, "type": "t", "cell_voltage_v": 4.2, "line_current_ka": 300,'
        b' "s\\ud800": 2},'
        b' {"ts": 1709251202000, "cell_voltage_v": 4.3, "line_current_ka": 299}]'
    )
    out = decode(decoder, TELEMETRY, payload)
    assert [s[2] for s in out.samples] == [NOW_NS + 2_000_000_000]
    assert [r.reason for r in out.rejections] == ["non_finite", "bad_utf8"]
    assert b"\\ud800" in out.rejections[1].payload


def test_an_unforeseen_exception_rejects_the_message_and_takes_back_its_rows(
    decoder: Decoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(obj: object) -> bytes:
        msg = "dump broke"
        raise RuntimeError(msg)

    monkeypatch.setattr(decode_module, "dump", broken)
    good = b'{"ts": 1709251200000, "cell_voltage_v": 4.2, "line_current_ka": 300}'
    out = Decoded()
    decoder.decode(TELEMETRY, good, NOW_NS, out)
    # the second object's rejection itself fails: the first object must not stay behind
    decoder.decode(TELEMETRY, b"[%s, 7]" % good, NOW_NS, out)
    assert len(out.samples) == 1
    assert [(r.reason, r.detail) for r in out.rejections] == [
        ("decode_error", "RuntimeError: dump broke")
    ]


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
        b' "butt_mm": 150, "crew": "B"}, {"ts": 1709251200000, "type": "metal_tap",'
        b' "metal_kg": 2250.5}, {"ts": 1709251200000, "type": "feeder_check", "note": "ok"}]'
    )
    out = decode(decoder, EVENT, payload)
    assert out.rejections == []
    assert out.events == [
        (
            "P1",
            "C001",
            NOW_NS,
            "anode_change",
            {"anode": 7, "block": "590", "butt_mm": 150, "crew": "B"},
        ),
        ("P1", "C001", NOW_NS, "metal_tap", {"metal_kg": 2250.5}),
        ("P1", "C001", NOW_NS, "feeder_check", {"note": "ok"}),
    ]


def test_topic_route_is_cached(decoder: Decoder) -> None:
    router = decoder.router
    first = router.route(TELEMETRY)
    assert first is router.route(TELEMETRY)
    assert (first.kind, first.potline, first.cell) == ("telemetry", "P1", "C001")
    assert router.templates[0].subscription == "smelter/+/+/telemetry"


def test_a_single_object_is_timed_and_the_objects_of_an_array_are_not(decoder: Decoder) -> None:
    # contract 6.5: arrival − ts in ms for a live sample, None for a buffer flushed as an array
    behind = b'{"ts": %d, "cell_voltage_v": 4.2, "line_current_ka": 300}' % (NOW_MS - 90_000)
    ahead = b'{"ts": %d, "cell_voltage_v": 4.2, "line_current_ka": 300}' % (NOW_MS + 1_500)
    out = Decoded()
    decoder.decode(TELEMETRY, behind, NOW_NS + 250_000, out)  # decoded 0.25 ms after NOW
    decoder.decode(TELEMETRY, ahead, NOW_NS, out)
    decoder.decode(TELEMETRY, b"[%s, %s]" % (behind, ahead), NOW_NS, out)
    assert [s[6] for s in out.samples] == [90_000, -1_500, None, None]


def test_a_replayed_object_is_not_timed(decoder: Decoder) -> None:
    route = decoder.router.route(TELEMETRY)
    assert route is not None
    out = Decoded()
    obj = {"ts": NOW_MS - 90_000, "cell_voltage_v": 4.2, "line_current_ka": 300}
    decoder.decode_object(route, "file.jsonl:1", obj, NOW_NS, out)
    assert [s[6] for s in out.samples] == [None]
