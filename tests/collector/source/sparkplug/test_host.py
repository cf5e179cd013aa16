"""The Sparkplug B host application, message by message, through the decoder.

Each test writes the edge node's messages out (births, data by alias, deaths) and checks
the contract rows, counts and commands by hand.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from collector.config.sparkplug import SparkplugInput
from collector.source.decode import Decoded, Decoder, IngestConfig
from collector.source.sparkplug.host import Host
from collector.source.sparkplug.naming import compile_input
from collector.source.sparkplug.payload import Datatype, Metric, PayloadError, decode, encode
from collector.source.topics import TopicRouter

T_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
NOW_NS = (T_MS + 60_000) * 1_000_000
MS = 1_000_000  # ns
NODE = "spBv1.0/P1/{kind}/P1-S01"
DEVICE = "spBv1.0/P1/{kind}/P1-S01/{device}"
RULE = {
    "name": "gateways",
    "potline": "group",
    "cell": "device",
    "metrics": {
        "cell_voltage_v": "Voltage",
        "line_current_ka": {"name": "LineCurrent", "unit": "A"},
        "bath_temp_c": "BathTemp",
    },
    "events": {
        "anode_change": {
            "when": "AnodeChange/Position",
            "fields": {"anode": "AnodeChange/Position", "block": "AnodeChange/Block"},
        }
    },
}
# the aliases the DBIRTH of C001 declares
V, A, TEMP, POSITION, BLOCK = 1, 2, 3, 4, 5


def host_decoder(rule: dict[str, Any] = RULE, owned: frozenset[str] = frozenset({"P1"})) -> Decoder:
    host = Host([compile_input(SparkplugInput.model_validate(rule))])
    return Decoder(TopicRouter([], owned), IngestConfig(), host)


def nbirth(seq: int = 0, bdseq: int = 0) -> tuple[str, bytes]:
    metrics = [
        Metric(name="bdSeq", datatype=Datatype.INT64, value=bdseq),
        Metric(name="Node Control/Rebirth", datatype=Datatype.BOOLEAN, value=False),
    ]
    return NODE.format(kind="NBIRTH"), encode(T_MS, seq, metrics)


def dbirth(seq: int, device: str = "C001", volts: float = 4.2) -> tuple[str, bytes]:
    metrics = [
        Metric(name="Voltage", alias=V, datatype=Datatype.DOUBLE, value=volts, timestamp_ms=T_MS),
        Metric(name="LineCurrent", alias=A, datatype=Datatype.DOUBLE, value=300_000.0),
        Metric(name="BathTemp", alias=TEMP, datatype=Datatype.FLOAT, value=955.5),
        Metric(name="AnodeChange/Position", alias=POSITION, datatype=Datatype.INT32),
        Metric(name="AnodeChange/Block", alias=BLOCK, datatype=Datatype.STRING),
    ]
    return DEVICE.format(kind="DBIRTH", device=device), encode(T_MS, seq, metrics)


TYPES = {V: Datatype.DOUBLE, A: Datatype.DOUBLE, POSITION: Datatype.INT32, BLOCK: Datatype.STRING}


def ddata(seq: int, *metrics: Metric, device: str = "C001") -> tuple[str, bytes]:
    """Data by alias, with no datatype on the wire: the birth declared it."""
    typed = [replace(m, datatype=TYPES.get(m.alias or 0, Datatype.DOUBLE)) for m in metrics]
    return DEVICE.format(kind="DDATA", device=device), encode(T_MS, seq, typed, datatypes=False)


def take(decoder: Decoder, *messages: tuple[str, bytes]) -> Decoded:
    out = Decoded()
    for topic, payload in messages:
        decoder.decode(topic, payload, NOW_NS, out)
    return out


def test_births_bind_aliases_and_their_values_are_a_sample() -> None:
    out = take(host_decoder(), nbirth(), dbirth(1))
    # 300,000 A is 300 kA; BathTemp is a Float: 955.5 is exact in 32 bits
    # a Sparkplug metric is not timed by the clock watchdog (contract 6.5): no lag
    assert out.samples == [("P1", "C001", T_MS * MS, 4.2, 300.0, {"bath_temp_c": 955.5}, None)]
    assert out.rejections == []
    assert out.counts == {"sparkplug_births": 2}


def test_data_by_alias_carries_what_it_does_not_report() -> None:
    later = T_MS + 1000
    out = take(
        host_decoder(),
        nbirth(),
        dbirth(1),
        ddata(2, Metric(alias=V, value=4.25, timestamp_ms=later)),
    )
    assert out.samples[1] == (
        "P1",
        "C001",
        later * MS,
        4.25,
        300.0,
        {"bath_temp_c": 955.5},
        None,
    )


def test_a_sequence_gap_is_counted_and_answered_with_one_rebirth_request() -> None:
    decoder = host_decoder()
    out = take(
        decoder,
        nbirth(),
        dbirth(1),
        ddata(2, Metric(alias=V, value=4.3)),
        ddata(5, Metric(alias=V, value=4.4)),  # 3 and 4 never came
        ddata(9, Metric(alias=V, value=4.5)),  # nor 6 to 8: no second request so soon
    )
    assert out.counts["sparkplug_seq_gaps"] == 2
    assert out.counts["sparkplug_lost"] == 2 + 3
    assert out.counts["sparkplug_rebirth_requests"] == 1
    assert [s[3] for s in out.samples] == [4.2, 4.3, 4.4, 4.5]  # the data itself is good
    (command,) = out.commands
    assert command[0] == "spBv1.0/P1/NCMD/P1-S01"
    (rebirth,) = decode(command[1]).metrics
    assert (rebirth.name, rebirth.datatype, rebirth.value) == (
        "Node Control/Rebirth",
        Datatype.BOOLEAN,
        True,
    )


def test_seq_wraps_after_255() -> None:
    messages = [nbirth(), dbirth(1)]
    messages += [ddata(k % 256, Metric(alias=V, value=4.2)) for k in range(2, 300)]
    out = take(host_decoder(), *messages)
    assert "sparkplug_seq_gaps" not in out.counts


def test_unknown_aliases_and_data_before_a_birth_are_counted_not_guessed() -> None:
    decoder = host_decoder()
    before = take(decoder, ddata(7, Metric(alias=V, value=4.2)))  # no NBIRTH yet
    assert before.samples == []
    assert before.counts == {"sparkplug_unknown_alias": 1, "sparkplug_rebirth_requests": 1}
    out = take(decoder, nbirth(), dbirth(1), ddata(2, Metric(alias=99, value=1.0)))
    assert out.counts["sparkplug_unknown_alias"] == 1
    assert len(out.samples) == 1  # the birth's only
    undeclared = take(decoder, ddata(3, Metric(alias=V, value=4.3), device="C002"))
    assert undeclared.samples == []  # a device never born
    assert undeclared.counts["sparkplug_unknown_alias"] == 1


def test_a_device_death_takes_its_cell_offline_until_it_is_born_again() -> None:
    decoder = host_decoder()
    death = (DEVICE.format(kind="DDEATH", device="C001"), encode(T_MS + 5000, 2, []))
    out = take(decoder, nbirth(), dbirth(1), death, ddata(3, Metric(alias=V, value=4.3)))
    assert out.events == [
        (
            "P1",
            "C001",
            (T_MS + 5000) * MS,
            "offline",
            {"message": "DDEATH", "edge_node": "P1-S01"},
        )
    ]
    assert len(out.samples) == 1  # the data after the death is not read
    assert out.counts["sparkplug_unknown_alias"] == 1
    again = take(decoder, dbirth(4, volts=4.1))
    assert [s[3] for s in again.samples] == [4.1]


def test_a_node_death_counts_only_for_its_own_session() -> None:
    decoder = host_decoder()
    take(decoder, nbirth(bdseq=0), dbirth(1))
    death = (NODE.format(kind="NDEATH"), encode(None, None, [bdseq(0)]))
    reborn = take(decoder, nbirth(bdseq=1), dbirth(1), death)  # the old will, delivered late
    assert reborn.events == []
    assert reborn.counts.get("sparkplug_deaths", 0) == 0
    current = (NODE.format(kind="NDEATH"), encode(None, None, [bdseq(1)]))
    out = take(decoder, current, ddata(2, Metric(alias=V, value=4.3)))
    assert [e[3] for e in out.events] == ["offline"]
    assert out.counts["sparkplug_deaths"] == 1
    assert out.samples == []  # nothing is read of a dead node


def bdseq(value: int) -> Metric:
    return Metric(name="bdSeq", datatype=Datatype.INT64, value=value)


def test_a_value_out_of_bounds_is_rejected_naming_the_metric() -> None:
    out = take(host_decoder(), nbirth(), dbirth(1, volts=150.0))
    assert out.samples == []
    (rejection,) = out.rejections
    assert rejection.reason == "out_of_bounds"
    assert rejection.topic == "spBv1.0/P1/DBIRTH/P1-S01/C001"
    assert "'Voltage'" in rejection.detail
    assert orjson.loads(rejection.payload)["Voltage"] == 150.0  # the decoded metric


def test_an_anode_change_sent_as_metrics_is_an_event() -> None:
    t = T_MS + 7000
    out = take(
        host_decoder(),
        nbirth(),
        dbirth(1),
        ddata(
            2,
            Metric(alias=POSITION, value=12, timestamp_ms=t),
            Metric(alias=BLOCK, value="590", timestamp_ms=t),
        ),
    )
    assert out.events == [("P1", "C001", t * MS, "anode_change", {"anode": 12, "block": "590"})]
    assert len(out.samples) == 1  # an event instant is no sample


def test_historical_values_are_samples_of_their_time_and_leave_the_live_ones() -> None:
    old = T_MS - 3_600_000
    out = take(
        host_decoder(),
        nbirth(),
        dbirth(1),
        ddata(
            2,
            Metric(alias=V, value=4.0, timestamp_ms=old, is_historical=True),
            Metric(alias=A, value=290_000.0, timestamp_ms=old, is_historical=True),
        ),
        ddata(3, Metric(alias=V, value=4.3, timestamp_ms=T_MS + 1000)),
    )
    assert [(s[2] // MS, s[3], s[4]) for s in out.samples] == [
        (T_MS, 4.2, 300.0),
        (old, 4.0, 290.0),
        (T_MS + 1000, 4.3, 300.0),  # the live current, not the historical one
    ]


def test_cells_named_by_metric_prefix_on_the_node_itself() -> None:
    rule = {
        **RULE,
        "cell": {"from": "metric_prefix", "pattern": r"Pot(\d+)"},
        "events": {},
    }
    metrics = [
        bdseq(0),
        Metric(name="Pot117/Voltage", alias=1, datatype=Datatype.DOUBLE, value=4.2),
        Metric(name="Pot117/LineCurrent", alias=2, datatype=Datatype.DOUBLE, value=300_000.0),
        Metric(name="Pot118/Voltage", alias=3, datatype=Datatype.DOUBLE, value=4.3),
        Metric(name="Pot118/LineCurrent", alias=4, datatype=Datatype.DOUBLE, value=300_000.0),
        Metric(name="Rectifier/Current", alias=5, datatype=Datatype.DOUBLE, value=1.0),
    ]
    out = take(host_decoder(rule), (NODE.format(kind="NBIRTH"), encode(T_MS, 0, metrics)))
    assert sorted((s[1], s[3]) for s in out.samples) == [("117", 4.2), ("118", 4.3)]
    assert out.rejections == []  # Rectifier/Current feeds nothing: not read, not refused


def test_a_group_another_instance_owns_is_foreign() -> None:
    decoder = host_decoder(owned=frozenset({"P2"}))
    out = take(decoder, nbirth(), dbirth(1))
    assert out.samples == []
    assert out.foreign == 1


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\x05abc"])
def test_a_payload_that_is_no_sparkplug_is_rejected(payload: bytes) -> None:
    out = take(host_decoder(), (NODE.format(kind="NDATA"), payload))
    assert [r.reason for r in out.rejections] == ["bad_sparkplug"]
    assert out.rejections[0].payload == payload


def test_subscriptions_follow_the_owned_potlines() -> None:
    read = ["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"]
    assert host_decoder(owned=frozenset({"P1", "P2"})).subscriptions() == {
        f"spBv1.0/{p}/{kind}/#": 1 for p in ("P1", "P2") for kind in read
    }


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("spBv1.0/P1/NCMD/P1-S01", b"\x0a\x05abc"),
        ("spBv1.0/P1/DCMD/P1-S01/C001", b"\x00"),
        ("spBv1.0/STATE/cellmon", b'{"online": true, "timestamp": 1}'),
    ],
)
def test_commands_and_host_states_are_no_input_and_no_dead_letter(
    topic: str, payload: bytes
) -> None:
    out = take(host_decoder(), nbirth(), (topic, payload))
    assert out.rejections == []
    assert out.samples == []
    assert out.events == []


KINDS = ["NBIRTH", "NDEATH", "NDATA", "NCMD", "DBIRTH", "DDEATH", "DDATA", "DCMD"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    device = "/C00" + str(draw(st.integers(1, 3))) if kind.startswith("D") else ""
    topic = f"spBv1.0/P1/{kind}/P1-S01{device}"
    if draw(st.booleans()):
        return topic, draw(st.binary(max_size=64))  # not even protobuf
    metrics = []
    for _ in range(draw(st.integers(0, 4))):
        datatype = draw(st.sampled_from(list(Datatype)[1:16]))
        value = draw(VALUES)
        name = draw(
            st.sampled_from(["Voltage", "LineCurrent", "bdSeq", "AnodeChange/Position", None])
        )
        alias = draw(st.one_of(st.none(), st.integers(0, 8)))
        try:
            encode(None, None, [Metric(name=name, alias=alias, datatype=datatype, value=value)])
        except (PayloadError, TypeError, ValueError, OverflowError):
            value = None  # a value its datatype cannot hold: sent as null
        metrics.append(Metric(name=name, alias=alias, datatype=datatype, value=value))
    seq = draw(st.one_of(st.none(), st.integers(0, 255)))
    ts = draw(st.one_of(st.none(), st.integers(0, 2**63)))
    return topic, encode(ts, seq, metrics)


@given(st.lists(messages(), max_size=12))
@example([(NODE.format(kind="NBIRTH"), b""), (DEVICE.format(kind="DDATA", device="C001"), b"")])
def test_no_sequence_of_sparkplug_messages_raises_and_every_refusal_has_a_reason(
    sequence: list[tuple[str, bytes]],
) -> None:
    out = take(host_decoder(), *sequence)
    reasons = {r.reason for r in out.rejections}
    assert "decode_error" not in reasons, [r.detail for r in out.rejections]
    assert all(r.reason and r.detail for r in out.rejections)
    assert all(topic.startswith("spBv1.0/P1/NCMD/") for topic, _ in out.commands)
    assert all(n > 0 for n in out.counts.values())
