"""Fuzzing the decoder: arbitrary bytes and arbitrary JSON, depth and size at the edges.

Whatever comes in, the decoder must not raise, must account for every object (accepted or
rejected with a reason it documents, never the catch-all ``decode_error``), and whatever it
accepted must go into the real journal and through the line protocol encoder. The
``ci`` hypothesis profile (tests/conftest.py) fixes the seed; ``HYPOTHESIS_PROFILE=long``
searches longer.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.engine.batch import empty_batch
from collector.journal import store as journal
from collector.sinks.lineproto import encode_point, encode_samples, series_prefix
from collector.source.decode import Decoded, Decoder, IngestConfig
from collector.source.payload import MAX_DEPTH
from processors.events import EventPoints
from processors.model import Batch, Event
from tests.collector.source.test_decode import contract_decoder

NOW_MS = 1_709_251_200_000
NOW_NS = NOW_MS * 1_000_000
LIMITS = IngestConfig(max_payload_bytes=64 * 1024)
MESSAGE_REASONS = {"bad_topic", "too_large", "too_deep", "not_utf8", "not_json", "decode_error"}
OBJECT_REASONS = {
    "not_object",
    "missing_key",
    "wrong_type",
    "non_finite",
    "out_of_bounds",
    "future_ts",
    "bad_ts",
    "bad_key",
    "bad_utf8",
}
TOPICS = ["smelter/P1/C01/telemetry", "smelter/P1/C01/event", "smelter/P1/C 1/telemetry"]

# Text as a hostile controller writes it: any code point, lone surrogates and controls too.
text = st.text(st.characters(codec=None), max_size=12)
numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 4.2, 300, 1e308, -1e-308, 2**63, 2**64, 10**400]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
timestamps = st.one_of(
    st.integers(min_value=NOW_MS - 10**12, max_value=NOW_MS + 10**6),
    st.sampled_from(
        [
            "2024-02-29T23:00:00Z",
            "2024-02-29t23:00:00.5z",
            "2024-02-29T23:00:00+08:00",
            "2024-W09-4T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2024-02-30T00:00:00Z",
        ]
    ),
    values,
)
volts = st.one_of(st.floats(min_value=-1, max_value=120), numbers, values)


@st.composite
def contract_like(draw: st.DrawFn) -> dict[str, Any]:
    """An object near the contract, so the fuzzing reaches the checks behind the first."""
    obj: dict[str, Any] = {}
    if draw(st.booleans()):
        obj["ts"] = draw(timestamps)
    if draw(st.booleans()):
        obj["cell_voltage_v"] = draw(volts)
        obj["line_current_ka"] = draw(st.one_of(st.floats(min_value=-1, max_value=1200), volts))
    else:
        obj["type"] = draw(st.sampled_from(["anode_change", "metal_tap", "note"]) | values)
        obj["anode"] = draw(st.integers(min_value=-2, max_value=50) | values)
        obj["block"] = draw(st.sampled_from(["590", "590\\", "5\n90"]) | values)
        obj["metal_kg"] = draw(volts)
    obj.update(draw(st.dictionaries(text, values, max_size=4)))
    return obj


def nest(doc: Any, depth: int) -> Any:
    for _ in range(depth):
        doc = {"ts": NOW_MS, "type": "note", "d": doc}
    return doc


documents = st.one_of(
    contract_like(),
    st.lists(st.one_of(contract_like(), values), max_size=6),
    st.builds(nest, contract_like(), st.integers(min_value=MAX_DEPTH - 3, max_value=MAX_DEPTH + 2)),
    values,
)


def as_json(doc: Any) -> bytes:
    """The stdlib writes what controllers send: NaN, Infinity, huge integers, \\ud800."""
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return contract_decoder(LIMITS)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> journal.Inbox:
    return journal.Inbox(journal.connect_inbox(tmp_path_factory.mktemp("state")))


def objects_in(payload: bytes) -> int | None:
    """How many objects a payload holds for the decoder, or None if it is not JSON."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return len(doc) if type(doc) is list else 1


def check(decoder: Decoder, inbox: journal.Inbox, topic: str, payload: bytes) -> None:
    out = Decoded()
    decoder.decode(topic, payload, NOW_NS, out)  # must not raise
    reasons = [r.reason for r in out.rejections]
    assert "decode_error" not in reasons, out.rejections
    assert all(r.detail for r in out.rejections)
    message_level = [r for r in reasons if r in MESSAGE_REASONS]
    if message_level:
        assert len(out.rejections) == 1
        assert not out.samples
        assert not out.events
    else:
        assert set(reasons) <= OBJECT_REASONS
        count = objects_in(payload)
        assert count is not None
        assert len(out.samples) + len(out.events) + len(out.rejections) == count
    stored(inbox, out)


def stored(inbox: journal.Inbox, out: Decoded) -> None:
    """What was accepted goes into the journal and through the encoder, as in ``run``."""
    before = journal.read_counters(inbox._conn)
    counts = {"messages": 1, "rejected": len(out.rejections)}
    result = inbox.append(out.samples, out.events, counts)
    after = journal.read_counters(inbox._conn)
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in ("received", "accepted", "duplicates")}
    assert grew["received"] == grew["accepted"] + len(out.rejections) + grew["duplicates"]
    assert result.inserted == grew["accepted"]
    for s in out.samples:
        assert 0.0 <= s[3] <= 100.0
        assert 0.0 <= s[4] <= 1000.0
        assert all(math.isfinite(x) for x in (s[5] or {}).values())
    prefix = [series_prefix("cell", (("potline", "P1"), ("cell", "C01")))]
    n = len(out.samples)
    lines, _, rejected = encode_samples(
        prefix,
        [0] * n,
        [s[2] for s in out.samples],
        [s[3] for s in out.samples],
        [s[4] for s in out.samples],
        [s[5] for s in out.samples],
    )
    assert (lines, rejected) == (n, [])
    events = [Event(p, c, t, k, d) for p, c, t, k, d in out.events]
    for point in EventPoints().apply(Batch(empty_batch(), events), None)[1]:
        line = encode_point(point)  # raises Unencodable for what the decoder should refuse
        assert line is not None
        assert "\n" not in line


@given(st.sampled_from(TOPICS), st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(decoder: Decoder, inbox: journal.Inbox, topic: str, payload: bytes):
    check(decoder, inbox, topic, payload)


@given(st.sampled_from(TOPICS[:2]), documents)
def test_fuzz_arbitrary_json(decoder: Decoder, inbox: journal.Inbox, topic: str, doc: Any):
    check(decoder, inbox, topic, as_json(doc))


@given(st.integers(min_value=1, max_value=200_000), st.sampled_from([b"[", b'{"a":']))
def test_fuzz_depth_and_size_at_the_edges(
    decoder: Decoder, inbox: journal.Inbox, depth: int, opener: bytes
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    payload = opener * depth + b"1" + closer * depth
    out = Decoded()
    decoder.decode("smelter/P1/C01/event", payload, NOW_NS, out)
    want = "too_large" if len(payload) > LIMITS.max_payload_bytes else "too_deep"
    if depth > MAX_DEPTH:
        assert [r.reason for r in out.rejections] == [want]
    else:  # within the bounds: refused for what it is, a list or an object without ts
        assert [r.reason for r in out.rejections] == [
            "not_object" if opener == b"[" else "missing_key"
        ]


# Every JSON type in every field of the contract: one field of a good object replaced, and
# the reason it is refused for known exactly (or that it is still accepted).

PLAIN = st.text(st.characters(codec="ascii", categories=["L", "N", "Zs"]), max_size=8)
typed_values = st.one_of(
    st.tuples(st.just("int"), st.integers(min_value=-(2**63), max_value=2**64 - 1)),
    st.tuples(st.just("int"), st.sampled_from([0, 1, -1, 5, 100, 1000, 1001])),
    st.tuples(st.just("big"), st.integers(min_value=2**64, max_value=10**300)),  # a float
    st.tuples(st.just("huge"), st.integers(min_value=10**309, max_value=10**400)),
    st.tuples(st.just("float"), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("nonfinite"), st.sampled_from([math.nan, math.inf, -math.inf])),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("null"), st.none()),
    st.tuples(st.just("str"), st.one_of(PLAIN, st.sampled_from(["4.2", "300", "2024-02-29"]))),
    st.tuples(st.just("container"), st.lists(st.integers(0, 9), max_size=2)),
    st.tuples(st.just("container"), st.dictionaries(PLAIN, st.integers(0, 9), max_size=2)),
)
GOOD_SAMPLE = {"ts": NOW_MS - 1000, "cell_voltage_v": 4.2, "line_current_ka": 300.0}
GOOD_EVENTS = {
    "anode_change": {"ts": NOW_MS - 1000, "type": "anode_change", "anode": 3, "block": "590"},
    "metal_tap": {"ts": NOW_MS - 1000, "type": "metal_tap", "metal_kg": 2500.0},
}


def number_reason(kind: str, value: Any, low: float, high: float, *, low_open: bool) -> str:
    """What ``checks.number`` makes of a value in a number field bounded by [low, high]."""
    if kind in ("int", "float", "big"):
        x = float(value)
        above_low = x > low if low_open else x >= low
        return "accepted" if above_low and x <= high else "out_of_bounds"
    return {"huge": "out_of_bounds", "nonfinite": "non_finite"}.get(kind, "wrong_type")


def ts_reason(kind: str, value: Any) -> str:
    if kind != "int":
        return "out_of_bounds" if kind == "huge" else "bad_ts" if kind == "str" else "wrong_type"
    ns = value * 1_000_000
    if ns > NOW_NS + 300 * 10**9:
        return "future_ts"
    return "out_of_bounds" if ns < 946_684_800 * 10**9 else "accepted"


def telemetry_reason(key: str, kind: str, value: Any) -> str:
    if key == "ts":
        return ts_reason(kind, value)
    if key == "cell_voltage_v":
        return number_reason(kind, value, 0.0, 100.0, low_open=False)
    if key == "line_current_ka":
        return number_reason(kind, value, 0.0, 1000.0, low_open=False)
    # optional numbers, and any other key: a number passes through, anything else is
    # refused for an optional field of the contract and ignored for another key
    if kind in ("int", "float", "big"):
        return "accepted"
    if kind in ("huge", "nonfinite"):
        return "out_of_bounds" if kind == "huge" else "non_finite"
    return "wrong_type" if key in ("bath_temp_c", "noise_uohm") else "accepted"


def event_reason(kind_of_event: str, key: str, kind: str, value: Any) -> str:
    if key == "ts":
        return ts_reason(kind, value)
    if key == "type":  # a string, whatever else it is
        if kind == "null":
            return "missing_key"
        ok = kind == "str" and value and value not in GOOD_EVENTS
        return "accepted" if ok else "wrong_type" if kind != "str" or not value else "?"
    if kind == "nonfinite":  # every field of an event is stored: no NaN anywhere
        return "non_finite"
    if kind == "huge":
        return "out_of_bounds"
    if key == "anode":
        if kind == "null":
            return "missing_key"
        if kind != "int":
            return "wrong_type"
        return "accepted" if value >= 1 else "out_of_bounds"
    if key == "block":
        return "missing_key" if kind == "null" else "accepted" if kind == "str" else "wrong_type"
    if key in ("metal_kg", "butt_mm"):
        return number_reason(kind, value, 0.0, math.inf, low_open=key == "metal_kg")
    return "accepted"  # any other key of an event is kept as it is


@given(
    st.sampled_from(["ts", "cell_voltage_v", "line_current_ka", "bath_temp_c", "noise_uohm", "x"]),
    typed_values,
)
def test_fuzz_every_type_in_every_telemetry_field(
    decoder: Decoder, key: str, typed: tuple[str, Any]
) -> None:
    kind, value = typed
    obj = {**GOOD_SAMPLE, key: value}
    out = Decoded()
    decoder.decode("smelter/P1/C01/telemetry", as_json(obj), NOW_NS, out)
    got = [r.reason for r in out.rejections] or ["accepted"] * len(out.samples)
    assert got == [telemetry_reason(key, kind, value)], (obj, out.rejections)


@given(
    st.sampled_from(sorted(GOOD_EVENTS)),
    st.sampled_from(["ts", "type", "anode", "block", "butt_mm", "metal_kg", "x"]),
    typed_values,
)
def test_fuzz_every_type_in_every_event_field(
    decoder: Decoder, event_type: str, key: str, typed: tuple[str, Any]
) -> None:
    kind, value = typed
    obj = {**GOOD_EVENTS[event_type], key: value}
    expected = event_reason(event_type, key, kind, value)
    if key in ("anode", "block") and event_type != "anode_change" and expected != "non_finite":
        expected = "out_of_bounds" if kind == "huge" else "accepted"
    if key in ("metal_kg",) and event_type != "metal_tap":
        expected = event_reason("note", "x", kind, value)
    if key == "butt_mm" and event_type != "anode_change":
        expected = event_reason("note", "x", kind, value)
    if key == "type" and expected == "?":  # another event type: kept raw, no KPI
        expected = "accepted"
    out = Decoded()
    decoder.decode("smelter/P1/C01/event", as_json(obj), NOW_NS, out)
    got = [r.reason for r in out.rejections] or ["accepted"] * len(out.events)
    assert got == [expected], (obj, out.rejections)


@pytest.mark.parametrize("key", ["bath_temp_c", "noise_uohm"])
def test_an_optional_number_no_float_holds_is_out_of_bounds(decoder: Decoder, key: str) -> None:
    """Found by the fuzzing: ``1e400`` here was ``wrong_type``, unlike in the required fields."""
    payload = b'{"ts": %d, "cell_voltage_v": 4.2, "line_current_ka": 300, "%s": 1e400}' % (
        NOW_MS - 1000,
        key.encode(),
    )
    out = Decoded()
    decoder.decode("smelter/P1/C01/telemetry", payload, NOW_NS, out)
    assert [(r.reason, r.detail) for r in out.rejections] == [
        ("out_of_bounds", f"{key}: 1e400 does not fit a number")
    ]
