"""Sparkplug B payloads (Eclipse Sparkplug 3.0, section 6.4) to and from typed metrics.

The wire format is protobuf (``sparkplug_b.proto``, parsed by the maintained ``protobuf``
package). What the wire does not say is the datatype's meaning of a value: a DATA message
usually omits the datatype (the BIRTH declared it), signed integers travel in unsigned
fields, a DateTime is epoch milliseconds in a long. ``typed`` applies the datatype; the
host application supplies the datatype the birth declared when the metric has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from google.protobuf.message import DecodeError

from collector.source.sparkplug.sparkplug_b_pb2 import Payload as PbPayload


class Datatype(IntEnum):
    """The metric datatypes of the specification (section 6.4.16)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19


SIGNED_BITS = {Datatype.INT8: 8, Datatype.INT16: 16, Datatype.INT32: 32, Datatype.INT64: 64}
UNSIGNED_BITS = {Datatype.UINT8: 8, Datatype.UINT16: 16, Datatype.UINT32: 32, Datatype.UINT64: 64}
# Which protobuf field carries each datatype (DataSet cells use the same, by column type).
FIELD = {
    **dict.fromkeys((Datatype.INT8, Datatype.INT16, Datatype.INT32), "int_value"),
    **dict.fromkeys((Datatype.UINT8, Datatype.UINT16, Datatype.UINT32), "int_value"),
    **dict.fromkeys((Datatype.INT64, Datatype.UINT64, Datatype.DATETIME), "long_value"),
    Datatype.FLOAT: "float_value",
    Datatype.DOUBLE: "double_value",
    Datatype.BOOLEAN: "boolean_value",
    **dict.fromkeys((Datatype.STRING, Datatype.TEXT, Datatype.UUID), "string_value"),
    **dict.fromkeys((Datatype.BYTES, Datatype.FILE), "bytes_value"),
    Datatype.DATASET: "dataset_value",
}


_KNOWN = frozenset(Datatype)


class PayloadError(ValueError):
    """Bytes that are no Sparkplug B payload, or a value its datatype cannot hold."""


@dataclass(frozen=True, slots=True)
class DataSet:
    """A table metric: typed columns, rows of typed cells."""

    columns: tuple[str, ...]
    types: tuple[int, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric as sent: by name (in a birth), by alias (in data), or both.

    ``value`` is as the wire holds it until ``typed`` gives it its datatype's meaning;
    ``datatype`` is None when the message left it to the birth.
    """

    name: str | None = None
    alias: int | None = None
    timestamp_ms: int | None = None
    datatype: int | None = None
    value: Any = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False


@dataclass(frozen=True, slots=True)
class Payload:
    """A message's payload: its timestamp, its sequence number and its metrics."""

    timestamp_ms: int | None
    seq: int | None
    metrics: tuple[Metric, ...]


def decode(data: bytes) -> Payload:
    """The payload of a message's bytes; ``PayloadError`` if they are not one."""
    pb = PbPayload()
    try:
        pb.ParseFromString(data)
    except (DecodeError, RuntimeError) as err:  # RuntimeError: the parser's recursion limit
        msg = f"not a Sparkplug B payload: {err}"
        raise PayloadError(msg) from err
    return Payload(
        pb.timestamp if pb.HasField("timestamp") else None,
        pb.seq if pb.HasField("seq") else None,
        tuple(_metric(m) for m in pb.metrics),
    )


def _metric(m: PbPayload.Metric) -> Metric:
    field = m.WhichOneof("value")
    value: Any = None if field is None else getattr(m, field)
    if field == "dataset_value":
        value = _dataset(value)
    return Metric(
        name=m.name if m.HasField("name") else None,
        alias=m.alias if m.HasField("alias") else None,
        timestamp_ms=m.timestamp if m.HasField("timestamp") else None,
        datatype=m.datatype if m.HasField("datatype") else None,
        value=value,
        is_null=m.is_null or field is None,
        is_historical=m.is_historical,
        is_transient=m.is_transient,
    )


def _dataset(ds: PbPayload.DataSet) -> DataSet:
    types = tuple(ds.types)
    rows = []
    for row in ds.rows:
        cells = [getattr(e, f) if (f := e.WhichOneof("value")) else None for e in row.elements]
        rows.append(tuple(typed(t, c) for t, c in zip(types, cells, strict=False)))
    return DataSet(tuple(ds.columns), types, tuple(rows))


def typed(datatype: int, value: Any) -> Any:
    """A wire value with its datatype's meaning: signed integers signed, the rest as is.

    Signed integers are read from their own width, whether the sender wrote them as two's
    complement of that width (Tahu) or sign-extended to the field's.
    """
    if value is None or type(value) is not int:
        return value
    bits = SIGNED_BITS.get(Datatype(datatype)) if datatype in _KNOWN else None
    if bits is None:
        return value
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def encode(
    timestamp_ms: int | None,
    seq: int | None,
    metrics: Iterable[Metric],
    *,
    datatypes: bool = True,
) -> bytes:
    """A payload's bytes; each metric's value typed by its datatype (a builder's side).

    ``datatypes=False`` leaves the datatypes off the wire, as DATA messages usually do
    (the birth declared them); the values are still written by them.
    """
    pb = PbPayload()
    if timestamp_ms is not None:
        pb.timestamp = timestamp_ms
    if seq is not None:
        pb.seq = seq
    for metric in metrics:
        _fill(pb.metrics.add(), metric, datatypes=datatypes)
    return bytes(pb.SerializeToString())


def _fill(pb: PbPayload.Metric, m: Metric, *, datatypes: bool) -> None:
    if m.name is not None:
        pb.name = m.name
    if m.alias is not None:
        pb.alias = m.alias
    if m.timestamp_ms is not None:
        pb.timestamp = m.timestamp_ms
    if m.datatype is not None and datatypes:
        pb.datatype = m.datatype
    if m.is_historical:
        pb.is_historical = True
    if m.is_transient:
        pb.is_transient = True
    if m.is_null or m.value is None:
        pb.is_null = True
        return
    if m.datatype is None:
        msg = f"metric {m.name or m.alias}: a value needs its datatype to be encoded"
        raise PayloadError(msg)
    datatype = Datatype(m.datatype)
    if datatype == Datatype.DATASET:
        _fill_dataset(pb.dataset_value, m.value)
        return
    setattr(pb, FIELD[datatype], _wire(datatype, m.value))


def _fill_dataset(pb: PbPayload.DataSet, ds: DataSet) -> None:
    pb.num_of_columns = len(ds.columns)
    pb.columns.extend(ds.columns)
    pb.types.extend(ds.types)
    for row in ds.rows:
        elements = pb.rows.add().elements
        for t, cell in zip(ds.types, row, strict=True):
            setattr(elements.add(), FIELD[Datatype(t)], _wire(Datatype(t), cell))


def _wire(datatype: Datatype, value: Any) -> Any:
    """A typed value as its field holds it: a negative integer as two's complement."""
    bits = SIGNED_BITS.get(datatype)
    if bits is not None:
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            msg = f"{value} does not fit {datatype.name}"
            raise PayloadError(msg)
        return value % (1 << bits)
    bits = UNSIGNED_BITS.get(datatype)
    if bits is not None and not 0 <= value < 1 << bits:
        msg = f"{value} does not fit {datatype.name}"
        raise PayloadError(msg)
    return value


def datatype_name(datatype: int | None) -> str:
    """A datatype's name for messages (an unknown number as itself)."""
    if datatype is None:
        return "no datatype"
    try:
        return Datatype(datatype).name
    except ValueError:
        return str(datatype)
