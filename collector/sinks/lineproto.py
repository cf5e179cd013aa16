r"""InfluxDB line protocol encoding, exact or not at all.

What was accepted must come back from InfluxDB unchanged: names and strings are escaped
the way InfluxDB 1.x parses them, or refused with ``Unencodable`` (``collector.sinks.escape``
says which text cannot be carried); an integer beyond 64 bits is refused too.

Samples are the bulk of the output, so they have their own path: the series prefix of a
cell is formatted once and cached, field keys are escaped once per batch, and each sample
costs one f-string.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import NamedTuple, cast

import numpy as np
import orjson

from collector.sinks.escape import (
    FIELD_KEYS,
    RESERVED_KEY,
    Unencodable,
    check_name,
    check_text,
    escape_field_key,
    escape_tag,
)
from processors.model import FieldValue, Point

_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_INT64 = range(-(2**63), 2**63)
_PREFIXES: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
"""Series prefixes by (measurement, tags): a KPI series is written again every minute."""
_PREFIXES_LIMIT = 100_000
_SHORT = 40  # values: the check of a column costs ~4 µs, repr ~0.2 µs a float (measured)


class Rejected(NamedTuple):
    """Something that was not encoded: why, and its repr (for ``rejected.lp``)."""

    reason: str
    what: str


def _tag(key: str, value: str) -> str:
    if key == RESERVED_KEY:
        msg = "tag key 'time' is refused by InfluxDB"
        raise Unencodable(msg)
    return f"{escape_tag(key, 'tag key')}={escape_tag(value)}"


def series_prefix(measurement: str, tags: Iterable[tuple[str, str]]) -> str:
    """``measurement,tag=value,...`` followed by the space that separates the fields.

    Tags with an empty value are left out. Raises ``Unencodable``.
    """
    check_name(measurement, "measurement")
    if measurement[0] == "#":
        msg = f"measurement {measurement!r} would make the line a comment"
        raise Unencodable(msg)
    parts = [measurement.translate(_MEAS_ESCAPES)]
    parts.extend(_tag(k, v) for k, v in sorted(tags) if v != "")
    return ",".join(parts) + " "


def field_value(value: FieldValue) -> str | None:
    """Line-protocol literal of a field value; None for a float that is not finite.

    Raises ``Unencodable`` for a string with a control character or an integer beyond
    64 bits.
    """
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        if value not in _INT64:
            msg = f"integer {value} does not fit 64 bits"
            raise Unencodable(msg)
        return f"{value}i"
    if type(value) is str:
        check_text(value, "string")
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    x = float(value)
    return repr(x) if math.isfinite(x) else None


def encode_fields(fields: dict[str, FieldValue]) -> str:
    """``key=value,...`` leaving out values InfluxDB cannot store (NaN, infinity)."""
    out = []
    keys = FIELD_KEYS
    for key, value in fields.items():
        if type(value) is float:  # most KPI fields: no call to field_value
            lit: str | None = repr(value) if math.isfinite(value) else None
        else:
            lit = field_value(value)
        if lit is None:
            continue
        escaped = keys.get(key)
        out.append(f"{escaped if escaped is not None else escape_field_key(key)}={lit}")
    return ",".join(out)


def encode_point(point: Point) -> str | None:
    """One line, or None when no field is left to write; raises ``Unencodable``."""
    fields = encode_fields(point.fields)
    if not fields:
        return None
    series = (point.measurement, point.tags)
    prefix = _PREFIXES.get(series) if type(point.tags) is tuple else None
    if prefix is None:
        prefix = series_prefix(*series)
        if len(_PREFIXES) >= _PREFIXES_LIMIT:
            _PREFIXES.clear()
        if type(point.tags) is tuple:  # as typed; a list of tags is not kept
            _PREFIXES[series] = prefix
    return f"{prefix}{fields} {point.time_ns}"


def encode_points(points: Iterable[Point]) -> tuple[int, bytes, list[Rejected]]:
    """(line count, newline-terminated body, the points that could not be encoded).

    One point that cannot be encoded, for whatever reason, costs only itself.
    """
    lines: list[str] = []
    rejected: list[Rejected] = []
    for p in points:
        try:
            line = encode_point(p)
        except Exception as err:  # whatever the failure, it costs the point, not the batch
            rejected.append(Rejected(f"{type(err).__name__}: {err}", repr(p)))
            continue
        if line is not None:
            lines.append(line)
    body = ("\n".join(lines) + "\n").encode() if lines else b""
    return len(lines), body, rejected


def encode_samples(
    prefixes: Mapping[int, str],
    cell_idx: Sequence[int],
    ts_ns: Sequence[int],
    voltage_v: Sequence[float],
    current_ka: Sequence[float],
    extra: Sequence[dict[str, float] | None],
) -> tuple[int, bytes, list[Rejected]]:
    """The ``cell`` lines of a sample batch (plain Python sequences, not numpy).

    ``prefixes[k]`` is the series prefix of the cell with index k. Returns (line count,
    body, rejected): a sample whose extra field key cannot be encoded is rejected alone.
    The lines are joined column by column, each column formatted in one call, so that no
    Python code runs per sample unless the extras differ from sample to sample.
    """
    n = len(ts_ns)
    if not len(cell_idx) == len(voltage_v) == len(current_ka) == len(extra) == n:
        msg = "the columns of a sample batch differ in length"
        raise ValueError(msg)
    more, bad = _extra_columns(extra)
    columns: list[Iterable[str]] = [
        map(prefixes.__getitem__, cell_idx),
        repeat("voltage_v="),
        float_reprs(voltage_v),
        repeat(",current_ka="),
        float_reprs(current_ka),
        *more,
        repeat(" "),
        int_strs(ts_ns),
    ]
    lines = list(map("".join, zip(*columns, strict=False)))  # repeat() never ends
    rejected = [
        Rejected(
            why, repr((prefixes[cell_idx[k]], ts_ns[k], voltage_v[k], current_ka[k], extra[k]))
        )
        for k, why in bad.items()
    ]
    if bad:
        lines = [line for k, line in enumerate(lines) if k not in bad]
    if not lines:
        return 0, b"", rejected
    lines.append("")
    return len(lines) - 1, "\n".join(lines).encode(), rejected


def _extra_columns(
    extra: Sequence[dict[str, float] | None],
) -> tuple[list[Iterable[str]], dict[int, str]]:
    """The columns the extra fields add to the lines, and why a sample was rejected, by row.

    A batch has no extras, or as a rule the same keys in every sample (one decoder): those
    are formatted a key at a time. Otherwise each sample's extras make one string.
    """
    if extra.count(None) == len(extra):
        return [], {}
    if None not in extra:
        dicts = cast("Sequence[dict[str, float]]", extra)
        shapes = set(map(tuple, dicts))
        if len(shapes) == 1:
            (keys,) = shapes
            try:
                escaped = [escape_field_key(k) for k in keys]
            except Unencodable as err:
                return [], dict.fromkeys(range(len(extra)), str(err))
            values = zip(*map(dict.values, dicts), strict=True)
            pairs = zip(escaped, values, strict=True)
            return [c for k, col in pairs for c in (repeat(f",{k}="), float_reprs(col))], {}
    more: list[str] = []
    bad: dict[int, str] = {}
    for row, ex in enumerate(extra):
        try:
            more.append("".join([f",{escape_field_key(k)}={x!r}" for k, x in (ex or {}).items()]))
        except Unencodable as err:
            more.append("")
            bad[row] = str(err)
    return [more], bad


def int_strs(values: Sequence[int]) -> list[str]:
    """``str`` of each integer (the times): orjson writes an int as str does, in one call."""
    if len(values) < _SHORT:
        return list(map(str, values))
    try:
        text = orjson.dumps(values)
    except (TypeError, orjson.JSONEncodeError):  # beyond 64 bits, or not a sequence of ints
        return list(map(str, values))
    if text.translate(None, b"0123456789-,") != b"[]":  # a float or bool among them
        return list(map(str, values))
    return text[1:-1].decode().split(",")


def float_reprs(values: Sequence[object]) -> list[str]:
    """``repr`` of each value, a third of the time for a long column of ordinary floats.

    orjson writes a float's shortest round-trip digits, as repr does, and in the same
    positional notation for magnitudes from 1e-4 to 1e16, where repr has no exponent
    (orjson's notation outside, and for NaN, booleans, strings or big integers, differs:
    repr then). ``_SHORT`` is where the check of the column costs as much as it saves.
    """
    if len(values) < _SHORT:
        return list(map(repr, values))
    try:
        text = orjson.dumps(values)
        magnitude = np.abs(np.array(values, dtype=np.float64))
    except (TypeError, ValueError, OverflowError):
        return list(map(repr, values))
    positional = (magnitude >= 1e-4) & (magnitude < 1e16) | (magnitude == 0)
    if text.translate(None, b"0123456789.-,") != b"[]" or not positional.all():
        return list(map(repr, values))
    return text[1:-1].decode().split(",")
