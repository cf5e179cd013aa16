"""InfluxDB line protocol encoding.

Samples are the bulk of the output, so they have their own path: the series prefix of a
cell is formatted once and cached, and each sample costs one f-string.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from processors.model import FieldValue, Point

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.translate(_TAG_ESCAPES)


def series_prefix(measurement: str, tags: Iterable[tuple[str, str]]) -> str:
    """``measurement,tag=value,...`` followed by the space that separates the fields."""
    parts = [measurement.translate(_MEAS_ESCAPES)]
    parts.extend(f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags) if v != "")
    return ",".join(parts) + " "


def field_value(value: FieldValue) -> str | None:
    """Line-protocol literal of a field value; None for a float that is not finite."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return f"{value}i"
    if type(value) is str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    x = float(value)
    return repr(x) if math.isfinite(x) else None


def encode_fields(fields: dict[str, FieldValue]) -> str:
    """``key=value,...`` leaving out values InfluxDB cannot store (NaN, infinity)."""
    out = []
    for key, value in fields.items():
        lit = field_value(value)
        if lit is not None:
            out.append(f"{escape_key(key)}={lit}")
    return ",".join(out)


def encode_point(point: Point) -> str | None:
    """One line, or None when no field is left to write."""
    fields = encode_fields(point.fields)
    if not fields:
        return None
    return f"{series_prefix(point.measurement, point.tags)}{fields} {point.time_ns}"


def encode_points(points: Iterable[Point]) -> tuple[int, bytes]:
    """(line count, newline-terminated body)."""
    lines = [line for p in points if (line := encode_point(p)) is not None]
    return len(lines), ("\n".join(lines) + "\n").encode() if lines else b""


def encode_samples(
    prefixes: Sequence[str],
    cell_idx: Sequence[int],
    ts_ns: Sequence[int],
    voltage_v: Sequence[float],
    current_ka: Sequence[float],
    extra: Sequence[dict[str, float] | None],
) -> bytes:
    """The ``cell`` measurement lines of a sample batch (plain Python sequences, not numpy).

    ``prefixes[k]`` is the series prefix of the cell with index k.
    """
    lines: list[str] = []
    append = lines.append
    keys: dict[str, str] = {}  # field keys escaped once per batch, not once per sample
    for c, t, v, i, ex in zip(cell_idx, ts_ns, voltage_v, current_ka, extra, strict=True):
        if ex:
            more = "".join(
                [
                    f",{keys.get(k) or keys.setdefault(k, escape_key(k))}={x!r}"
                    for k, x in ex.items()
                ]
            )
            append(f"{prefixes[c]}voltage_v={v!r},current_ka={i!r}{more} {t}")
        else:
            append(f"{prefixes[c]}voltage_v={v!r},current_ka={i!r} {t}")
    if not lines:
        return b""
    lines.append("")
    return "\n".join(lines).encode()
