"""The contract's checks of the values of an accepted object (sections 1 and 5.5).

They decide what the line protocol can store exactly, so each refusal is an ``Invalid``
with its reason code rather than a point InfluxDB would mangle or refuse; the decoder
runs them on every object, in the MQTT thread, so they test types by identity.
"""

from __future__ import annotations

import math
import re
from typing import Any

from collector.sinks.escape import Unencodable, escape_field_key, escape_tag
from collector.source.payload import Invalid, OutOfRange

# What the line protocol cannot carry in a string field.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def is_number(x: object) -> bool:
    """A JSON number as orjson gives it; ``bool`` is not one, though Python says it is."""
    t = type(x)
    return t is float or t is int


def number(obj: dict[str, Any], key: str, low: float, high: float) -> float:
    """A number of ``obj`` within [low, high], as a float: the line protocol's field type."""
    try:
        x = obj[key]
    except KeyError:
        raise Invalid("missing_key", f"{key}: required key is missing") from None
    if not is_number(x):
        if type(x) is OutOfRange:
            raise x.invalid(key)
        raise Invalid("wrong_type", f"{key}: expected a number, got {x!r}")
    if type(x) is float and not math.isfinite(x):
        raise Invalid("non_finite", f"{key}: {x} is not a finite number")
    if not low <= x <= high:
        raise Invalid("out_of_bounds", f"{key}: {x} outside {low:g}..{high:g}")
    return float(x)


def check_key(key: str) -> None:
    """Refuse a field key the line protocol cannot carry exactly (contract 5.5: ``bad_key``).

    The encoder's own rule decides (``lineproto``), so what is accepted here is what
    InfluxDB stores under the same name: no control character, and no backslash that
    would escape the delimiter after it.
    """
    try:
        escape_field_key(key)
    except Unencodable as err:
        raise Invalid("bad_key", str(err)) from None


def _check_tag(value: str, what: str) -> None:
    try:
        escape_tag(value)
    except Unencodable as err:
        raise Invalid("bad_key", f"{what}: {err}") from None


def event(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The type and the data of an event object, checked to be storable as a raw point."""
    kind = obj.get("type")
    if kind is None:
        raise Invalid("missing_key", "type: required key is missing")
    if type(kind) is not str or not kind:
        raise Invalid("wrong_type", f"type: expected a non-empty string, got {kind!r}")
    _check_tag(kind, "type")
    data = {k: v for k, v in obj.items() if k not in ("ts", "type")}
    for key, x in data.items():
        _check_event_field(key, x)
    if kind == "anode_change":
        _check_anode_change(data)
    elif kind == "metal_tap":
        number(data, "metal_kg", 0.0, math.inf)
        if data["metal_kg"] <= 0:
            raise Invalid("out_of_bounds", f"metal_kg: must be > 0, got {data['metal_kg']}")
    return kind, data


def _check_event_field(key: str, x: Any) -> None:
    """An event's top-level key and value become a field of the raw ``cell_event`` point."""
    check_key(key)
    if type(x) is float and not math.isfinite(x):
        raise Invalid("non_finite", f"{key}: {x} is not a finite number")
    if type(x) is str:
        bad = _CONTROL.search(x)
        if bad is not None:
            raise Invalid("bad_key", f"{key}: string holds the control character {bad.group()!r}")
    elif type(x) is OutOfRange:
        raise x.invalid(key)
    elif type(x) in (dict, list):
        _check_nested(key, x)


def _check_nested(key: str, x: Any) -> None:
    """Nested values are stored as JSON text: no number beyond a float, no control character.

    Depth is bounded before parsing, so the recursion is too.
    """
    items = x.items() if type(x) is dict else enumerate(x)
    for k, v in items:
        t = type(v)
        if type(k) is str and _CONTROL.search(k):
            raise Invalid("bad_key", f"{key}: a nested key holds a control character")
        if t is str and _CONTROL.search(v):
            raise Invalid("bad_key", f"{key}: a nested string holds a control character")
        if t is OutOfRange:
            raise v.invalid(key)
        if t is dict or t is list:
            _check_nested(key, v)


def _required(data: dict[str, Any], key: str, kind: type, expected: str) -> Any:
    value = data.get(key)
    if value is None:
        raise Invalid("missing_key", f"{key}: required key is missing")
    if type(value) is not kind:
        raise Invalid("wrong_type", f"{key}: expected {expected}, got {value!r}")
    return value


def _check_anode_change(data: dict[str, Any]) -> None:
    anode = _required(data, "anode", int, "an integer")
    if anode < 1:
        raise Invalid("out_of_bounds", f"anode: must be >= 1, got {anode}")
    block = _required(data, "block", str, "a string")
    if block:  # an empty tag value is left out of the line, not refused
        _check_tag(block, "block")
    if "butt_mm" in data:
        number(data, "butt_mm", 0.0, math.inf)
    crew = data.get("crew")
    if crew is not None and type(crew) is not str:
        raise Invalid("wrong_type", f"crew: expected a string, got {crew!r}")
