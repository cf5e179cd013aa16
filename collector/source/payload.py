"""Payload bytes to JSON values and contract timestamps, safely.

A controller's payload may be nested 100,000 deep, hold numbers no float holds or strings
no UTF-8 can encode. These functions read it without recursion limits, exceptions or
values that cannot be stored escaping: each problem becomes an ``Invalid`` with its
reason code, which the decoder turns into a rejection.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MAX_DEPTH = 32
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# ``ts`` as RFC 3339 section 5.6 writes it: full-date "T" full-time, with an offset.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class Invalid(Exception):
    """Internal signal from a field check: reason code and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class OutOfRange:
    """A JSON number no float can hold (``1e400``, a 400-digit integer), kept by its text.

    Only the lenient parser makes these; the checks reject them as ``out_of_bounds`` where
    a number is read, and anywhere else in an event.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def invalid(self, key: str) -> Invalid:
        """The rejection of this number read as ``key``."""
        return Invalid("out_of_bounds", f"{key}: {self.text} does not fit a number")


def parse_ts(value: object) -> int:
    """Return the UTC nanoseconds of a contract timestamp (epoch ms or RFC 3339 with offset)."""
    if type(value) is int:
        return value * 1_000_000
    if type(value) is str:
        return _parse_rfc3339(value)
    if type(value) is OutOfRange:
        raise value.invalid("ts")
    raise Invalid("wrong_type", f"ts: expected epoch ms or an RFC 3339 string, got {value!r}")


def _parse_rfc3339(value: str) -> int:
    """Exactly RFC 3339 (``t`` and ``z`` too), to the nanosecond; other ISO 8601 is refused."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise Invalid("bad_ts", f"ts: not an RFC 3339 timestamp: {value!r}")
    date, time, fraction, offset = m.groups()
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        dt = datetime.fromisoformat(f"{date}T{time}{zone}")
    except ValueError:
        raise Invalid("bad_ts", f"ts: not a valid date and time: {value!r}") from None
    ns = int((fraction or "").ljust(9, "0"))
    return ((dt - _EPOCH) // _MICROSECOND) * 1000 + ns


def depth(payload: bytes) -> int:
    """How deep the brackets of a payload nest, strings left out; no parser recursion."""
    depth = deepest = 0
    for b in _BRACKETS.findall(_JSON_STRING.sub(b"", payload)):
        depth += 1 if b in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def lenient_json(payload: bytes, err: Exception) -> Any:
    """Parse what orjson refused when it is only non-finite numbers, so they can be named.

    ``NaN`` and ``1e999`` are not JSON, but controllers send them; the stdlib parser reads
    them, and the per-object checks then reject just the objects that carry them. Numbers
    no float holds become ``OutOfRange`` (``out_of_bounds``); integers past 64 bits become
    floats, as orjson reads them. The stdlib lets lone surrogates through: ``check_storable``
    finds them. Raises ``Invalid`` (``not_utf8``, ``not_json``) with ``err``, orjson's word.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as uerr:
        raise Invalid("not_utf8", f"payload is not UTF-8: {uerr}") from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except ValueError:
        raise Invalid("not_json", f"payload is not JSON: {err}") from None


def _parse_int(text: str) -> int | float | OutOfRange:
    n = int(text)
    if -(2**63) <= n < 2**64:
        return n
    try:
        return float(n)
    except OverflowError:
        return OutOfRange(text)


def _parse_float(text: str) -> float | OutOfRange:
    x = float(text)
    return x if math.isfinite(x) else OutOfRange(text)


def check_storable(obj: dict[str, Any]) -> None:
    """A lone surrogate, which the stdlib parser keeps, cannot be stored (nor be UTF-8)."""
    try:
        orjson.dumps(obj, default=repr)
    except TypeError as err:
        raise Invalid("bad_utf8", f"a string is not valid Unicode: {err}") from None


def dump(obj: Any) -> bytes:
    """Serialise a rejected array element; the stdlib keeps NaN visible where orjson nulls it."""
    text = json.dumps(obj, default=repr, ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, so the dead letter shows it
        return json.dumps(obj, default=repr).encode()
