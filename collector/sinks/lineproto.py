r"""InfluxDB line protocol encoding, exact or not at all.

What was accepted must come back from InfluxDB unchanged, so each part of a line is
escaped the way InfluxDB 1.x parses it, found against the real server (see
tests/collector/sinks/test_lineproto.py):

- tag keys and values: a ``\`` before ``,``, ``=`` or a space escapes it and is removed;
  every other backslash is kept as it is. The scanner takes any delimiter right after a
  backslash for an escaped one.
- field keys: the same three and ``"`` are escaped and unescaped, left to right; but the
  scanner lets a backslash escape whatever follows it, backslashes included.
- string field values: ``\`` and ``"`` are escaped.

Some text therefore cannot be carried at all, and ``Unencodable`` names it so that the
caller can keep it aside instead of writing a line InfluxDB refuses or stores differently:

- a tag key, tag value or field key that ends with a backslash (it would escape the
  delimiter after it);
- a field key with an odd number of backslashes right before ``,``, ``=`` or a space;
- ``time`` as a tag key (refused) or a field key (silently dropped);
- empty keys and measurements, control characters (category Cc: a newline would split
  the line) and lone surrogates (no UTF-8) anywhere, an integer beyond 64 bits.

Samples are the bulk of the output, so they have their own path: the series prefix of a
cell is formatted once and cached, field keys are escaped once per batch, and each sample
costs one f-string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from processors.model import FieldValue, Point

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_FIELD_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", '"': r"\""})
_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_UNCARRIED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ODD_BACKSLASHES_BEFORE_DELIMITER = re.compile(r"(?<!\\)\\(?:\\\\)*[,= ]")
_RESERVED_KEY = "time"
_INT64 = range(-(2**63), 2**63)
_FIELD_KEYS: dict[str, str] = {}  # field keys checked and escaped, by key
_FIELD_KEYS_LIMIT = 10_000


class Unencodable(ValueError):
    """A name or value that line protocol cannot carry exactly; the message says which."""


class Rejected(NamedTuple):
    """Something that was not encoded: why, and its repr (for ``rejected.lp``)."""

    reason: str
    what: str


def _check_text(text: str, what: str) -> None:
    if _UNCARRIED.search(text):
        msg = f"{what} {text!r} holds a control character or a lone surrogate"
        raise Unencodable(msg)


def _check_name(text: str, what: str) -> None:
    if not text:
        msg = f"empty {what}"
        raise Unencodable(msg)
    _check_text(text, what)
    if text[-1] == "\\":
        msg = f"{what} {text!r} ends with a backslash"
        raise Unencodable(msg)


def escape_tag(text: str, what: str = "tag value") -> str:
    """Escape a tag key or value; raises ``Unencodable``."""
    _check_name(text, what)
    return text.translate(_TAG_ESCAPES)


def escape_field_key(key: str) -> str:
    """Escape a field key; raises ``Unencodable``.

    KPI and alarm points repeat a few dozen keys in every batch: each is checked once.
    """
    escaped = _FIELD_KEYS.get(key)
    if escaped is not None:
        return escaped
    escaped = _escape_new_field_key(key)
    if len(_FIELD_KEYS) >= _FIELD_KEYS_LIMIT:
        _FIELD_KEYS.clear()
    _FIELD_KEYS[key] = escaped
    return escaped


def _escape_new_field_key(key: str) -> str:
    _check_name(key, "field key")
    if key == _RESERVED_KEY:
        msg = "field key 'time' is dropped by InfluxDB"
        raise Unencodable(msg)
    if _ODD_BACKSLASHES_BEFORE_DELIMITER.search(key):
        msg = f"field key {key!r} has an odd run of backslashes before , = or space"
        raise Unencodable(msg)
    return key.translate(_FIELD_KEY_ESCAPES)


def _tag(key: str, value: str) -> str:
    if key == _RESERVED_KEY:
        msg = "tag key 'time' is refused by InfluxDB"
        raise Unencodable(msg)
    return f"{escape_tag(key, 'tag key')}={escape_tag(value)}"


def series_prefix(measurement: str, tags: Iterable[tuple[str, str]]) -> str:
    """``measurement,tag=value,...`` followed by the space that separates the fields.

    Tags with an empty value are left out. Raises ``Unencodable``.
    """
    _check_name(measurement, "measurement")
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
        _check_text(value, "string")
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    x = float(value)
    return repr(x) if math.isfinite(x) else None


def encode_fields(fields: dict[str, FieldValue]) -> str:
    """``key=value,...`` leaving out values InfluxDB cannot store (NaN, infinity)."""
    out = []
    for key, value in fields.items():
        lit = field_value(value)
        if lit is not None:
            out.append(f"{escape_field_key(key)}={lit}")
    return ",".join(out)


def encode_point(point: Point) -> str | None:
    """One line, or None when no field is left to write; raises ``Unencodable``."""
    fields = encode_fields(point.fields)
    if not fields:
        return None
    return f"{series_prefix(point.measurement, point.tags)}{fields} {point.time_ns}"


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
    """
    lines: list[str] = []
    append = lines.append
    rejected: list[Rejected] = []
    keys: dict[str, str] = {}  # field keys escaped once per batch, not once per sample

    def key(k: str) -> str:
        return keys.setdefault(k, escape_field_key(k))

    for c, t, v, i, ex in zip(cell_idx, ts_ns, voltage_v, current_ka, extra, strict=True):
        if not ex:
            append(f"{prefixes[c]}voltage_v={v!r},current_ka={i!r} {t}")
            continue
        try:
            more = "".join([f",{keys.get(k) or key(k)}={x!r}" for k, x in ex.items()])
        except Unencodable as err:
            rejected.append(Rejected(str(err), repr((prefixes[c], t, v, i, ex))))
            continue
        append(f"{prefixes[c]}voltage_v={v!r},current_ka={i!r}{more} {t}")
    if not lines:
        return 0, b"", rejected
    n = len(lines)
    lines.append("")
    return n, "\n".join(lines).encode(), rejected
