"""The ``inputs`` of the rules files: which topics to subscribe, and each payload's layout.

Kept apart from the derived fields and alarms (``collector.config.rules``): an input rule
is about the wire (topic levels, keys, units, nesting), the others about the values.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from collector.config.schema import NonEmpty, Section, fail
from collector.config.yamlsource import KeyPath
from collector.source.mapping import ID_FIELDS, TS_UNITS, UNITS, InputMapping, compile_mapping
from processors.rules.expression_syntax import SAMPLE_FIELDS

PLACEHOLDERS = ("{potline}", "{cell}")
WILDCARDS = ("+", "#")


def _topic_template(topic: str) -> str:
    """Templates are compiled by ``collector.source.topics``, which trusts what passes here."""
    levels = topic.split("/")
    for placeholder in PLACEHOLDERS:
        count = levels.count(placeholder)
        if count > 1:
            msg = f"{topic!r} has {placeholder} {count} times; it must appear once"
            raise ValueError(msg)
    for level in levels:
        if level not in PLACEHOLDERS:
            _literal_level(topic, level)
    return topic


def _literal_level(topic: str, level: str) -> None:
    if any(w in level for w in WILDCARDS):
        msg = (
            f"{topic!r} has a wildcard in level {level!r}: "
            "{potline} and {cell} already match one level each; '+' and '#' are not allowed"
        )
        raise ValueError(msg)
    if "{" in level or "}" in level:
        msg = (
            f"{topic!r} has level {level!r}: only {{potline}} and {{cell}} may be placeholders, "
            "each a whole level"
        )
        raise ValueError(msg)


TopicTemplate = Annotated[str, AfterValidator(_topic_template)]


FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
RAW_FIELDS = ("ts", "time", "voltage_v", "current_ka")
"""Keys the raw ``cell`` measurement or the payload already use, beside ``SAMPLE_FIELDS``."""
SOURCE_KEY = re.compile(r"[^.\s]+(\.[^.\s]+)*")


def _source_key(value: str) -> str:
    if not SOURCE_KEY.fullmatch(value):
        msg = (
            "must be a payload key, or a path of keys separated by '.' (e.g. 'meas.U_mV'), "
            f"without spaces, got {value!r}"
        )
        raise ValueError(msg)
    return value


def _key_shorthand(value: Any) -> Any:
    """``cell_voltage_v: U`` is short for ``cell_voltage_v: {key: U}``."""
    return {"key": value} if isinstance(value, str) else value


SourceKey = Annotated[str, AfterValidator(_source_key)]


class Conversion(Section):
    """The unit a controller sends a field in, or the scale and offset that reach ours."""

    unit: str | None = None
    scale: float | None = None
    offset: float | None = None

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, scale: float | None) -> float | None:
        if scale == 0:
            msg = "must not be 0: every value would read 0"
            raise ValueError(msg)
        return scale

    @property
    def scaled(self) -> bool:
        """Whether a scale or an offset is given."""
        return self.scale is not None or self.offset is not None


class FieldSource(Conversion):
    """Where a contract field is in a controller's objects, and in what unit."""

    key: SourceKey


class InputRule(Section):
    """An MQTT subscription: topics matching ``topic`` carry ``kind`` payloads, laid out so."""

    name: NonEmpty
    topic: TopicTemplate
    kind: Literal["telemetry", "event"]
    qos: Literal[0, 1, 2] = 1
    path: SourceKey | None = None
    fields: dict[str, Annotated[FieldSource, BeforeValidator(_key_shorthand)]] = Field(
        default_factory=dict
    )
    types: dict[str, NonEmpty] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _layout(self) -> InputRule:
        problems = _layout_problems(self)
        if problems:
            fail(problems, self)
        return self

    def mapping(self) -> InputMapping | None:
        """The compiled layout, None for the contract's own."""
        fields = {t: (f.key, f.unit, f.scale, f.offset) for t, f in self.fields.items()}
        return compile_mapping(path=self.path, fields=fields, types=self.types)


def _layout_problems(rule: InputRule) -> list[tuple[KeyPath, str]]:
    """Each mapped field is one the kind has, read from a key of its own, in a known unit."""
    problems = _id_problems(rule)
    known = (
        ("ts", *ID_FIELDS, *SAMPLE_FIELDS)
        if rule.kind == "telemetry"
        else ("ts", *ID_FIELDS, "type")
    )
    sources: dict[str, str] = {}
    for target, source in rule.fields.items():
        where: KeyPath = ("fields", target)
        if target not in known and (not FIELD_NAME.fullmatch(target) or target in RAW_FIELDS):
            problems.append(
                (
                    where,
                    f"{target!r} is not a field name; {rule.kind} fields: "
                    f"{', '.join(known)}, or a new name for a pass-through key",
                )
            )
        problems += [((*where, k), m) for k, m in unit_problems(target, source)]
        if source.key in sources:
            message = f"key {source.key!r} already feeds {sources[source.key]!r}"
            problems.append(((*where, "key"), message))
        sources[source.key] = target
    if rule.types and rule.kind != "event":
        problems.append((("types",), "types name event types: only for kind: event"))
    return problems


def _id_problems(rule: InputRule) -> list[tuple[KeyPath, str]]:
    """The potline and the cell each come from the topic, or else from a payload key."""
    levels = rule.topic.split("/")
    problems: list[tuple[KeyPath, str]] = []
    for name in ID_FIELDS:
        placeholder = "{" + name + "}"
        if placeholder in levels and name in rule.fields:
            message = f"the {name} is already the topic's {placeholder}: remove one of the two"
            problems.append((("fields", name), message))
        elif placeholder not in levels and name not in rule.fields:
            message = (
                f"{rule.topic!r} lacks {placeholder} as a whole level, e.g. "
                f"'smelter/{{potline}}/{{cell}}/telemetry'; or name the payload key that "
                f"holds it under fields ({name}: <key>)"
            )
            problems.append((("topic",), message))
    return problems


def unit_problems(target: str, source: Conversion) -> list[tuple[str, str]]:
    """(key, message) of what is wrong with a field's unit or scale, for its target."""
    scaled = source.scaled
    if target in ("type", *ID_FIELDS):
        if source.unit is not None or scaled:
            key = "unit" if source.unit is not None else "scale"
            return [(key, f"{target} is a name: it takes no unit or scale")]
        return []
    if target == "ts" and scaled:
        return [("scale", "ts is not scaled; give its unit")]
    if source.unit is None:
        return []
    if scaled:
        return [("unit", "give a unit or scale/offset, not both")]
    units = list(TS_UNITS) if target == "ts" else list(UNITS.get(target, ()))
    if not units:
        return [("unit", f"no units are known for {target!r}: use scale and offset")]
    if source.unit not in units:
        same = [u for u in units if u.lower() == source.unit.lower()]
        close = same or difflib.get_close_matches(source.unit, units, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return [
            ("unit", f"unknown unit {source.unit!r} for {target}: one of {', '.join(units)}{hint}")
        ]
    return []
