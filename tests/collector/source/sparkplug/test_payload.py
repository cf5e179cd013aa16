"""Sparkplug B payloads against bytes written out by hand from the protobuf wire format."""

from __future__ import annotations

import struct

import pytest

from collector.source.sparkplug.payload import (
    DataSet,
    Datatype,
    Metric,
    PayloadError,
    decode,
    encode,
    typed,
)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, wire: int, body: bytes) -> bytes:
    return varint(number << 3 | wire) + body


def test_a_hand_written_payload_decodes() -> None:
    # metric: name "Voltage" (1), alias 7 (2), timestamp (3), datatype Double (4), 4.2 (13)
    metric = (
        field(1, 2, varint(7) + b"Voltage")
        + field(2, 0, varint(7))
        + field(3, 0, varint(1_700_000_000_123))
        + field(4, 0, varint(10))
        + field(13, 1, struct.pack("<d", 4.2))
    )
    data = field(1, 0, varint(1_700_000_000_000)) + field(2, 2, varint(len(metric)) + metric)
    data += field(3, 0, varint(0))
    payload = decode(data)
    assert payload.timestamp_ms == 1_700_000_000_000
    assert payload.seq == 0
    (m,) = payload.metrics
    assert (m.name, m.alias, m.timestamp_ms, m.datatype) == ("Voltage", 7, 1_700_000_000_123, 10)
    assert m.value == 4.2
    assert not m.is_null


def test_a_data_metric_by_alias_alone_leaves_the_datatype_to_the_birth() -> None:
    metric = field(2, 0, varint(3)) + field(10, 0, varint(0xFB))  # int_value 251
    (m,) = decode(field(2, 2, varint(len(metric)) + metric)).metrics
    assert (m.name, m.alias, m.datatype) == (None, 3, None)
    assert typed(Datatype.INT8, m.value) == -5  # the birth said Int8
    assert typed(Datatype.UINT8, m.value) == 251


@pytest.mark.parametrize(
    ("datatype", "wire", "value"),
    [
        (Datatype.INT8, 0xFB, -5),  # two's complement of 8 bits (Tahu)
        (Datatype.INT8, 0xFFFFFFFB, -5),  # sign-extended to the 32-bit field
        (Datatype.INT16, 0x8000, -32768),
        (Datatype.INT32, 0x7FFFFFFF, 2**31 - 1),
        (Datatype.INT64, 2**64 - 1, -1),
        (Datatype.UINT32, 0xFFFFFFFF, 2**32 - 1),
        (Datatype.UINT64, 2**64 - 1, 2**64 - 1),
        (Datatype.DATETIME, 1_700_000_000_000, 1_700_000_000_000),
    ],
)
def test_integers_take_their_datatypes_meaning(datatype: Datatype, wire: int, value: int) -> None:
    assert typed(datatype, wire) == value


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (Datatype.INT8, -128),
        (Datatype.INT16, -2),
        (Datatype.INT32, -(2**31)),
        (Datatype.INT64, -(2**63)),
        (Datatype.UINT8, 255),
        (Datatype.UINT64, 2**64 - 1),
        (Datatype.FLOAT, 0.5),
        (Datatype.DOUBLE, 4.123),
        (Datatype.BOOLEAN, True),
        (Datatype.STRING, "Pot117"),
        (Datatype.TEXT, "änode"),
        (Datatype.DATETIME, 1_700_000_000_000),
        (Datatype.BYTES, b"\x00\xff"),
    ],
)
def test_every_datatype_round_trips(datatype: Datatype, value: object) -> None:
    data = encode(5, 1, [Metric(name="m", alias=1, datatype=datatype, value=value)])
    (m,) = decode(data).metrics
    assert typed(datatype, m.value) == value


def test_a_dataset_round_trips_with_typed_cells() -> None:
    table = DataSet(
        ("cell", "voltage", "count"),
        (Datatype.STRING, Datatype.DOUBLE, Datatype.INT16),
        (("C1", 4.1, -3), ("C2", 4.2, 7)),
    )
    data = encode(None, None, [Metric(name="table", datatype=Datatype.DATASET, value=table)])
    assert decode(data).metrics[0].value == table


def test_a_null_metric_says_so() -> None:
    (m,) = decode(encode(None, 3, [Metric(alias=2, datatype=Datatype.DOUBLE)])).metrics
    assert m.is_null
    assert m.value is None


def test_garbage_and_impossible_values_are_errors() -> None:
    with pytest.raises(PayloadError, match="not a Sparkplug B payload"):
        decode(b"\xff\xff\xff\xff")
    with pytest.raises(PayloadError, match="does not fit INT8"):
        encode(None, None, [Metric(name="x", datatype=Datatype.INT8, value=200)])
    with pytest.raises(PayloadError, match="needs its datatype"):
        encode(None, None, [Metric(name="x", value=1)])
