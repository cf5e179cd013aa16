"""Input mapping: a controller's own payload layout turned into the contract's.

Every pot control system names its keys its own way, sends millivolts or amperes, and
wraps its samples in envelopes. An input rule says where the samples are (``path``),
which key feeds which contract field (``fields``), in what unit, and what the controller
calls its event types (``types``). The decoder applies the mapping to each object and then
validates the result exactly like a contract payload, so every check and every reason code
is the same whatever the layout; details name the controller's key, which is what the
engineer looks for in the controller's documentation.

Unit conversions divide or multiply by exact powers of ten where they can, so that 4123 mV
becomes exactly the 4.123 V a contract payload would have carried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.source.ids import valid_level
from collector.source.payload import Invalid

Convert = Callable[[float], float]

UNITS: dict[str, dict[str, Convert]] = {
    "cell_voltage_v": {"V": lambda x: x, "mV": lambda x: x / 1000},
    "line_current_ka": {"kA": lambda x: x, "A": lambda x: x / 1000},
    "bath_temp_c": {"C": lambda x: x, "K": lambda x: x - 273.15},
    "noise_uohm": {"uOhm": lambda x: x, "nOhm": lambda x: x / 1000, "mOhm": lambda x: x * 1000},
    "metal_kg": {"kg": lambda x: x, "t": lambda x: x * 1000},
    "butt_mm": {"mm": lambda x: x, "cm": lambda x: x * 10},
}
"""The units a controller may send each contract field in, and how to reach the contract's."""

ID_FIELDS = ("potline", "cell")
"""The ids a topic level gives, or else a payload key."""
TS_UNITS = {"ms": 1_000, "s": 1, "us": 1_000_000, "ns": 1_000_000_000}
"""Epoch timestamps: units per second. The contract's is ms; RFC 3339 strings pass as they are."""


@dataclass(frozen=True, slots=True)
class FieldMap:
    """One contract field: where its value is in an object, and how to convert it."""

    target: str
    path: tuple[str, ...]
    convert: Convert | None
    label: str

    def read(self, obj: dict[str, Any]) -> Any:
        """The value at ``path``, or ``_ABSENT``."""
        value: Any = obj
        for key in self.path:
            if type(value) is not dict or key not in value:
                return _ABSENT
            value = value[key]
        return value


_ABSENT = object()


@dataclass(frozen=True, slots=True)
class InputMapping:
    """A compiled input rule's layout; ``apply`` gives the contract object of one object."""

    path: tuple[str, ...]
    fields: tuple[FieldMap, ...]
    types: Mapping[str, str]
    ts_per_s: int
    consumed: frozenset[str]
    labels: Mapping[str, str]
    ids: tuple[str, ...] = ()  # "potline", "cell": the ones taken from the payload

    def locate(self, doc: Any) -> Any:
        """The object or array of objects at ``path`` in a payload."""
        value = doc
        for depth, key in enumerate(self.path):
            if type(value) is not dict or key not in value:
                where = ".".join(self.path[: depth + 1])
                raise Invalid("missing_key", f"{where}: the input's path is not in the payload")
            value = value[key]
        return value

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object with contract keys; keys not mapped pass through under their own names."""
        out = {k: v for k, v in obj.items() if k not in self.consumed}
        for f in self.fields:
            value = f.read(obj)
            if value is _ABSENT:
                continue
            if f.convert is not None:
                value = _converted(f.convert, value)
            elif f.target == "ts" and self.ts_per_s != 1_000:
                value = _epoch_ms(value, self.ts_per_s)
            elif f.target == "type" and type(value) is str:
                value = self.types.get(value, value)
            out[f.target] = value
        return out

    def where(self, fields: dict[str, Any], topic: tuple[str, str]) -> tuple[str, str]:
        """(potline, cell): from the payload for the ids it holds, else from the topic."""
        if not self.ids:
            return topic
        found = dict(zip(ID_FIELDS, topic, strict=True))
        for name in self.ids:
            if name not in fields:
                raise Invalid("missing_key", f"{name}: required key is missing")
            value = fields.pop(name)
            text = str(value) if type(value) is int else value
            if type(text) is not str or not valid_level(text):
                raise Invalid(
                    "bad_id", f"{name}: {value!r} is not an id (1 to 32 of A-Z a-z 0-9 _ -)"
                )
            found[name] = text
        return found["potline"], found["cell"]

    def relabel(self, detail: str) -> str:
        """A validation detail about a contract key, reworded to name the controller's key."""
        key, sep, rest = detail.partition(": ")
        label = self.labels.get(key)
        return f"{label}: {rest}" if sep and label else detail


def _converted(convert: Convert, value: Any) -> Any:
    """A number in the contract's unit; anything else is left for the decoder to name."""
    t = type(value)
    if t is float or t is int:
        return convert(value)
    return value


def _epoch_ms(value: Any, per_s: int) -> Any:
    """Epoch seconds, µs or ns as the contract's integer milliseconds."""
    t = type(value)
    if t is int:
        return value * 1_000 // per_s if per_s > 1_000 else value * (1_000 // per_s)
    if t is float:
        return round(value * 1_000 / per_s)
    return value


def compile_mapping(
    *,
    path: str | None,
    fields: Mapping[str, tuple[str, str | None, float | None, float | None]],
    types: Mapping[str, str],
) -> InputMapping | None:
    """Compile an input rule's layout; None when it is the contract's own (the fast path).

    ``fields`` maps each contract field to (key, unit, scale, offset) as validated by the
    config loader, which has already refused unknown units and clashing keys.
    """
    if not path and not fields and not types:
        return None
    maps, ts_per_s, labels = [], 1_000, {}
    for target, (key, unit, scale, offset) in fields.items():
        convert = conversion(target, unit, scale, offset)
        if target == "ts" and unit is not None:
            ts_per_s = TS_UNITS[unit]
        label = key if key == target else f"{key} (as {target})"
        labels[target] = label
        maps.append(FieldMap(target, tuple(key.split(".")), convert, label))
    if types and "type" not in fields:
        maps.append(FieldMap("type", ("type",), None, "type"))
    consumed = frozenset(m.path[0] for m in maps if len(m.path) == 1)
    return InputMapping(
        path=tuple(path.split(".")) if path else (),
        fields=tuple(maps),
        types=dict(types),
        ts_per_s=ts_per_s,
        consumed=consumed,
        labels=labels,
        ids=tuple(name for name in ID_FIELDS if name in fields),
    )


def conversion(
    target: str, unit: str | None, scale: float | None, offset: float | None
) -> Convert | None:
    """How a value in ``unit`` (or scaled) becomes the contract's; None: it already is."""
    if target == "ts":
        return None
    if unit is not None:
        convert = UNITS[target][unit]
        return None if unit == next(iter(UNITS[target])) else convert
    if scale is None and offset is None:
        return None
    k, b = 1.0 if scale is None else scale, 0.0 if offset is None else offset
    return lambda x: x * k + b
