"""The typed, frozen configuration of cellmon, and its loader with errors that say where.

Everything is validated before anything connects, and all the problems of the config file
and of every rules file come back together as ``file:line: key: message``, worded for the
engineer who edits the YAML rather than for the programmer who wrote the model. Nothing
below this module reads raw YAML.
"""

from __future__ import annotations

import difflib
import keyword
import os
import re
import types
import zoneinfo
from collections.abc import Sequence
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from collector.mapping import ID_FIELDS, TS_UNITS, UNITS, InputMapping, compile_mapping
from collector.yamlsource import ConfigError, ConfigIssue, KeyPath, YamlDoc, dotted, load_yaml
from processors.expressions import (
    CELL_CONSTANTS,
    FUNCTIONS,
    SAMPLE_FIELDS,
    parse_expression,
    unknown_name_message,
    unknown_names,
)

__all__ = [
    "AlarmRule",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "DerivedRule",
    "FieldSource",
    "InfluxConfig",
    "IngestConfig",
    "InputRule",
    "MqttConfig",
    "PlantConfig",
    "PotlineConfig",
    "Rules",
    "SinkConfig",
    "Targets",
    "TargetsOverride",
    "TlsConfig",
    "check",
    "load_config",
    "load_rules",
    "secret",
]

RULES_DIR = "rules"
LEVEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
PLACEHOLDERS = ("{potline}", "{cell}")
WILDCARDS = ("+", "#")


# Checks of single values. They raise ValueError, whose text becomes the issue's message.


def _level_name(value: str) -> str:
    if not LEVEL_NAME.fullmatch(value):
        raise ValueError(
            f"must be 1 to 32 of A-Z a-z 0-9 _ - (it is a topic level and a tag), got {value!r}"
        )
    return value


def _env_name(value: str) -> str:
    """Reject what looks like a pasted secret; never echo it, it may be the secret itself."""
    if not ENV_NAME.fullmatch(value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits, '_'), "
            "never the secret itself"
        )
    return value


def _unquoted_time(value: Any) -> Any:
    """Catch YAML 1.1 reading an unquoted 16:00 as the base-60 number 960."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        message = f'expected a time "HH:MM" in quotes, got the number {value}'
        if isinstance(value, int) and value >= 60:
            message += f" (YAML reads an unquoted {value // 60}:{value % 60:02d} as {value})"
        raise ValueError(message)
    return value


def _hhmm(value: str) -> str:
    if not HHMM.fullmatch(value):
        raise ValueError(f'expected a time "HH:MM" from "00:00" to "23:59", got {value!r}')
    return value


def _zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        close = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ", e.g. 'Asia/Shanghai' or 'UTC'"
        raise ValueError(f"not a zoneinfo time zone key: {name!r}{hint}") from None
    return name


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


def _topic_template(topic: str) -> str:
    """Templates are compiled by ``collector.topics``, which trusts what passes here."""
    levels = topic.split("/")
    for placeholder in PLACEHOLDERS:
        count = levels.count(placeholder)
        if count > 1:
            raise ValueError(f"{topic!r} has {placeholder} {count} times; it must appear once")
    for level in levels:
        if level not in PLACEHOLDERS:
            _literal_level(topic, level)
    return topic


def _literal_level(topic: str, level: str) -> None:
    if any(w in level for w in WILDCARDS):
        raise ValueError(
            f"{topic!r} has a wildcard in level {level!r}: "
            "{potline} and {cell} already match one level each; '+' and '#' are not allowed"
        )
    if "{" in level or "}" in level:
        raise ValueError(
            f"{topic!r} has level {level!r}: only {{potline}} and {{cell}} may be placeholders, "
            "each a whole level"
        )


def _fail(problems: Sequence[tuple[KeyPath, str]], value: object) -> NoReturn:
    """Report problems found across a list at each item's own key, so each gets its line.

    pydantic-core merges a ValidationError raised inside a validator into the outer one,
    with each loc taken relative to the validated value.
    """
    raise ValidationError.from_exception_data(
        "cellmon",
        [
            InitErrorDetails(type=PydanticCustomError("cellmon", message), loc=loc, input=value)
            for loc, message in problems
        ],
    )


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]
NonEmpty = Annotated[str, Field(min_length=1)]
EnvName = Annotated[str, AfterValidator(_env_name)]
LevelName = Annotated[str, AfterValidator(_level_name)]
ShiftStart = Annotated[str, BeforeValidator(_unquoted_time), AfterValidator(_hhmm)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
TopicTemplate = Annotated[str, AfterValidator(_topic_template)]


class Section(BaseModel):
    """Base of every config model.

    Frozen, because config and runtime are two things; strict, because YAML already types
    its values and ``port: yes`` silently becoming 1 helps nobody; unknown keys rejected,
    because a typo that is ignored is a setting that is silently at its default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TlsConfig(Section):
    """Files for TLS to the broker; relative paths are from the working directory."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class MqttConfig(Section):
    """The broker connection. A stable client id lets the broker keep our session while down."""

    host: NonEmpty = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: NonEmpty = "cellmon-1"
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, gt=0)
    reconnect_max_s: Positive = 30.0


class IngestConfig(Section):
    """Limits of the source stage.

    Acknowledgements go out in small groups because brokers bound the unacknowledged QoS 1
    messages in flight (Mosquitto: 20); a larger group would stall the broker.
    """

    ack_batch: Count = 20
    ack_interval_ms: Positive = 5.0
    max_payload_bytes: Count = 262144
    future_tolerance_s: NonNegative = 300.0
    dedup_window_s: NonNegative = 3600.0
    voltage_min_v: float = 0.0
    voltage_max_v: float = 100.0
    current_min_ka: float = 0.0
    current_max_ka: float = 1000.0
    dead_letter_max_bytes: Count = 4096

    @model_validator(mode="after")
    def _ranges(self) -> IngestConfig:
        problems = [
            ((high,), f"must be above {low} ({getattr(self, low)}), got {getattr(self, high)}")
            for low, high in (
                ("voltage_min_v", "voltage_max_v"),
                ("current_min_ka", "current_max_ka"),
            )
            if getattr(self, low) >= getattr(self, high)
        ]
        if problems:
            _fail(problems, self)
        return self


class InfluxConfig(Section):
    """Where results go. v2 serves InfluxDB 2.x/3.x and 1.8+; v1 is the 1.x ``/write`` API."""

    url: HttpUrl = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v2"
    database: NonEmpty = "cellmon"
    bucket: NonEmpty = "cellmon"
    org: NonEmpty = "smelter"
    token_env: EnvName | None = "INFLUX_TOKEN"
    timeout_s: Positive = 10.0
    gzip: bool = True


ALERT_FIELDS = ("{potline}", "{cell}", "{rule}", "{severity}")


def _alert_topic(topic: str) -> str:
    """Alert topics are published to, so every level is literal or one of ALERT_FIELDS."""
    for level in topic.split("/"):
        if level in ALERT_FIELDS:
            continue
        if not level or any(c in level for c in "+#{}"):
            raise ValueError(
                f"{topic!r} has level {level!r}: levels are non-empty, without + or #, and "
                f"placeholders ({', '.join(ALERT_FIELDS)}) are whole levels"
            )
    return topic


class AlertsConfig(Section):
    """Alarm transitions published over MQTT, for a control-room HMI or a pager gateway."""

    topic: Annotated[str, AfterValidator(_alert_topic)] | None = None
    qos: Literal[0, 1, 2] = 1
    retain: bool = True


class SinkConfig(Section):
    """How points leave the journal; the file sink is for the demo and for tests."""

    type: Literal["influx", "file"] = "influx"
    path: NonEmpty = "points.lp"
    batch_lines: Count = 5000
    flush_interval_s: Positive = 1.0
    max_buffer_mib: Positive = 1024.0
    retry_max_s: Positive = 30.0


class Targets(Section):
    """The plant's goals; each potline may override any of them."""

    sec_savings_kwh_per_t: Positive = 100.0
    anode_cycle_days: Positive = 31.0
    anode_cycle_tolerance_days: NonNegative = 1.0
    anode_block: NonEmpty = "590"
    anode_effect_threshold_v: Positive = 8.0


class TargetsOverride(Section):
    """A potline's own goals; a key left out keeps the plant's value."""

    sec_savings_kwh_per_t: Positive | None = None
    anode_cycle_days: Positive | None = None
    anode_cycle_tolerance_days: NonNegative | None = None
    anode_block: NonEmpty | None = None
    anode_effect_threshold_v: Positive | None = None


class PotlineConfig(Section):
    """One potline; its id is the ``{potline}`` topic level and the ``potline`` tag."""

    id: LevelName
    current_efficiency: float = Field(default=0.925, gt=0, le=1)
    baseline_sec_kwh_per_t: Positive
    anodes_per_cell: Count = 40
    targets: TargetsOverride = TargetsOverride()


class PlantConfig(Section):
    """The plant's calendar, tariff and potlines; periods are cut in its local time."""

    timezone: Annotated[str, AfterValidator(_zone)] = "Asia/Shanghai"
    shifts: list[ShiftStart] = Field(default=["00:00", "08:00", "16:00"], min_length=1)
    max_gap_s: Positive = 60.0
    tariff_cny_per_kwh: NonNegative = 0.38
    kpi_update_s: Positive = 60.0
    complete_grace_s: NonNegative = 900.0
    potlines: list[PotlineConfig] = Field(min_length=1)

    @field_validator("shifts")
    @classmethod
    def _increasing(cls, shifts: list[str]) -> list[str]:
        problems = [
            ((i,), f"must be after {shifts[i - 1]!r}: shifts are strictly increasing")
            for i in range(1, len(shifts))
            if shifts[i] <= shifts[i - 1]
        ]
        if problems:
            _fail(problems, shifts)
        return shifts

    @field_validator("potlines")
    @classmethod
    def _unique_ids(cls, potlines: list[PotlineConfig]) -> list[PotlineConfig]:
        first: dict[str, int] = {}
        problems: list[tuple[KeyPath, str]] = []
        for i, potline in enumerate(potlines):
            if potline.id in first:
                problems.append(((i, "id"), f"duplicate id, also potlines[{first[potline.id]}]"))
            first.setdefault(potline.id, i)
        if problems:
            _fail(problems, potlines)
        return potlines

    @property
    def shift_times(self) -> tuple[time, ...]:
        """The shift starts as times of day, in ``timezone``."""
        return tuple(time(int(s[:2]), int(s[3:])) for s in self.shifts)


FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
RAW_FIELDS = ("ts", "time", "voltage_v", "current_ka")
"""Keys the raw ``cell`` measurement or the payload already use, beside ``SAMPLE_FIELDS``."""
SOURCE_KEY = re.compile(r"[^.\s]+(\.[^.\s]+)*")


def _source_key(value: str) -> str:
    if not SOURCE_KEY.fullmatch(value):
        raise ValueError(
            "must be a payload key, or a path of keys separated by '.' (e.g. 'meas.U_mV'), "
            f"without spaces, got {value!r}"
        )
    return value


def _key_shorthand(value: Any) -> Any:
    """``cell_voltage_v: U`` is short for ``cell_voltage_v: {key: U}``."""
    return {"key": value} if isinstance(value, str) else value


SourceKey = Annotated[str, AfterValidator(_source_key)]


class FieldSource(Section):
    """Where a contract field is in a controller's objects, and in what unit."""

    key: SourceKey
    unit: str | None = None
    scale: float | None = None
    offset: float | None = None

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, scale: float | None) -> float | None:
        if scale == 0:
            raise ValueError("must not be 0: every value would read 0")
        return scale


class InputRule(Section):
    """An MQTT subscription: topics matching ``topic`` carry ``kind`` payloads, laid out so."""

    name: NonEmpty
    topic: TopicTemplate
    kind: Literal["telemetry", "event"]
    qos: Literal[0, 1, 2] = 1
    path: SourceKey | None = None
    fields: dict[str, Annotated[FieldSource, BeforeValidator(_key_shorthand)]] = {}
    types: dict[str, NonEmpty] = {}

    @model_validator(mode="after")
    def _layout(self) -> InputRule:
        problems = _layout_problems(self)
        if problems:
            _fail(problems, self)
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
        problems += [((*where, k), m) for k, m in _unit_problems(target, source)]
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


def _unit_problems(target: str, source: FieldSource) -> list[tuple[str, str]]:
    scaled = source.scale is not None or source.offset is not None
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


def _field_name(value: str) -> str:
    if not FIELD_NAME.fullmatch(value) or keyword.iskeyword(value):
        raise ValueError(
            "must be a letter then up to 63 letters, digits or '_' (it is a field name "
            f"and a name in expressions), got {value!r}"
        )
    return value


def _expression(text: str) -> str:
    """Syntax and whitelist here, on the rule's own line; names once all files are merged."""
    parse_expression(text)
    return text


FieldName = Annotated[str, AfterValidator(_field_name)]
ExpressionText = Annotated[str, AfterValidator(_expression)]
Scope = Annotated[list[LevelName], Field(min_length=1)]


class DerivedRule(Section):
    """A field computed from each sample, written with it to the raw ``cell`` measurement."""

    name: FieldName
    expr: ExpressionText
    potlines: Scope | None = None
    fields: list[FieldName] = []


LIMITS = ("above", "below", "outside")


def _setting_limit(value: Any) -> Any:
    """A limit may name a potline setting, so a potline's targets override it."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number or (isinstance(value, str) and value in CELL_CONSTANTS):
        return value
    close = difflib.get_close_matches(value, CELL_CONSTANTS, n=1) if isinstance(value, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"expected a number or a potline setting ({', '.join(CELL_CONSTANTS)}), "
        f"got {_show(value)}{hint}"
    )


Limit = Annotated[float | str, BeforeValidator(_setting_limit)]


class AlarmRule(Section):
    """A field beyond a limit for ``hold_s``, or (``stale_s``) a cell that sent nothing."""

    name: LevelName
    severity: Literal["info", "warning", "critical"] = "warning"
    field: FieldName | None = None
    above: Limit | None = None
    below: Limit | None = None
    outside: list[Limit] | None = None
    hold_s: NonNegative = 0.0
    stale_s: Positive | None = None
    potlines: Scope | None = None
    cells: Scope | None = None
    fields: list[FieldName] = []

    @field_validator("outside")
    @classmethod
    def _band(cls, band: list[float | str] | None) -> list[float | str] | None:
        if band is None:
            return band
        numbers = [x for x in band if not isinstance(x, str)]
        if len(band) != 2 or (len(numbers) == 2 and numbers[0] >= numbers[1]):
            got = ", ".join(x if isinstance(x, str) else _number(x) for x in band)
            raise ValueError(f"must be [low, high] with low < high, e.g. [940, 975], got [{got}]")
        return band

    @model_validator(mode="after")
    def _one_kind(self) -> AlarmRule:
        problems = _alarm_kind_problems(self)
        if problems:
            _fail(problems, self)
        return self


def _alarm_kind_problems(alarm: AlarmRule) -> list[tuple[KeyPath, str]]:
    """An alarm is either a limit on one field or a stale alarm, and says which unambiguously."""
    given = [key for key in LIMITS if getattr(alarm, key) is not None]
    if alarm.stale_s is not None:
        keys = [k for k in ("field", *LIMITS, "hold_s", "fields") if k in alarm.model_fields_set]
        return [((k,), f"a stale alarm (stale_s) watches no field: remove {k!r}") for k in keys]
    if alarm.field is None:
        message = (
            "missing required key: an alarm watches a field (with above, below or outside), "
            "unless it is a stale alarm (stale_s)"
        )
        return [(("field",), message)]
    if not given:
        return [(("field",), "no limit: give above, below or outside: [low, high]")]
    if len(given) > 1:
        message = f"give only one of above, below, outside (found {' and '.join(given)})"
        return [((given[1],), message)]
    return []


class RulesFile(Section):
    """One ``rules/*.yaml`` file. Each file may add to any list; a new kind of rule is a list."""

    inputs: list[InputRule] = []
    derived: list[DerivedRule] = []
    alarms: list[AlarmRule] = []


class Rules(RulesFile):
    """All the rules files merged, in file-name order."""

    @model_validator(mode="after")
    def _complete(self) -> Rules:
        found = _duplicate_names(self) + _derived_problems(self) + _alarm_field_problems(self)
        problems = sorted(found, key=_rule_order)
        if not self.inputs:
            problems.append((("inputs",), "no input rules: at least one is needed"))
        if problems:
            _fail(problems, self)
        return self


RESERVED = {
    **dict.fromkeys((*SAMPLE_FIELDS, *RAW_FIELDS), "a field of the contract"),
    **dict.fromkeys(CELL_CONSTANTS, "a setting of the potline"),
    **dict.fromkeys(FUNCTIONS, "a function"),
}
NAMES_HELP = (
    f"expressions may use the sample's fields ({', '.join(SAMPLE_FIELDS)}), the potline's "
    f"settings ({', '.join(CELL_CONSTANTS)}), the derived fields above this one, and "
    "pass-through payload keys listed under 'fields'"
)


def _derived_problems(rules: Rules) -> list[tuple[KeyPath, str]]:
    """New names only; each expression reads only what exists when it is computed.

    Derived fields are computed in order (file-name order, then order in the file), so an
    expression may read those before it, and a later one is named as such in the message.
    """
    problems: list[tuple[KeyPath, str]] = []
    known = {*SAMPLE_FIELDS, *CELL_CONSTANTS}
    later = {rule.name for rule in rules.derived}
    for i, rule in enumerate(rules.derived):
        if rule.name in RESERVED:
            message = f"{rule.name!r} is {RESERVED[rule.name]}: a derived field needs a new name"
            problems.append((("derived", i, "name"), message))
        readable = known | set(rule.fields)
        for name in unknown_names(parse_expression(rule.expr), readable):
            if name == rule.name:
                message = f"{name!r} reads itself: an expression may read only earlier fields"
            elif name in later:
                message = f"{name!r} is derived after this rule: move its rule above this one"
            else:
                message = unknown_name_message(name, readable, NAMES_HELP)
            problems.append((("derived", i, "expr"), message))
        known.add(rule.name)
    return problems


def _alarm_field_problems(rules: Rules) -> list[tuple[KeyPath, str]]:
    """An alarm watches a field that samples have or that a derived rule adds."""
    problems: list[tuple[KeyPath, str]] = []
    derived = {rule.name for rule in rules.derived}
    for i, alarm in enumerate(rules.alarms):
        watchable = {*SAMPLE_FIELDS, *derived, *alarm.fields}
        if alarm.field is not None and alarm.field not in watchable:
            message = unknown_name_message(
                alarm.field,
                watchable,
                f"an alarm watches one of {', '.join(SAMPLE_FIELDS)}, a derived field, "
                "or a pass-through payload key listed under 'fields'",
                noun="field",
            )
            problems.append((("alarms", i, "field"), message))
    return problems


def _rule_order(problem: tuple[KeyPath, str]) -> tuple[int, int]:
    """Problems of the merged rules in file order, then line order, like the others."""
    field, index = problem[0][:2]
    return list(RulesFile.model_fields).index(str(field)), int(index)


def _duplicate_names(rules: RulesFile) -> list[tuple[KeyPath, str]]:
    """Every rule has a name that identifies it in logs and metrics: unique within its list."""
    problems: list[tuple[KeyPath, str]] = []
    for field in type(rules).model_fields:
        seen: set[str] = set()
        for i, rule in enumerate(getattr(rules, field)):
            if rule.name in seen:
                message = f"duplicate name {rule.name!r}: names are unique across all rules files"
                problems.append(((field, i, "name"), message))
            seen.add(rule.name)
    return problems


class PfcConfig(Section):
    """IPCC 2006 Tier 2 slope method; defaults for centre-worked prebake cells, GWP AR5."""

    slope_cf4: Positive = 0.143
    c2f6_ratio: NonNegative = 0.121
    gwp_cf4: Positive = 6630.0
    gwp_c2f6: Positive = 11100.0
    min_duration_s: NonNegative = 0.0


class AnodeResponseConfig(Section):
    """How a cell's voltage response to an anode change is measured."""

    band_v: Positive = 0.05
    window_s: Positive = 8 * 3600.0
    pre_window_s: Positive = 600.0


class ConfigFile(Section):
    """The keys of ``cellmon.yaml``."""

    mqtt: MqttConfig = MqttConfig()
    ingest: IngestConfig = IngestConfig()
    influx: InfluxConfig = InfluxConfig()
    sink: SinkConfig = SinkConfig()
    alerts: AlertsConfig = AlertsConfig()
    state_dir: NonEmpty = "var/cellmon"
    metrics_interval_s: Positive = 10.0
    rules_check_s: NonNegative = 2.0
    instance: NonEmpty | None = None
    plant: PlantConfig
    targets: Targets = Targets()
    pfc: PfcConfig = PfcConfig()
    anode_response: AnodeResponseConfig = AnodeResponseConfig()


class Config(ConfigFile):
    """The whole configuration: the file's keys, plus where it came from and its rules."""

    source: Path
    rules: Rules

    @property
    def instance_name(self) -> str:
        """The ``instance`` tag of the self-metrics: unique per process, like the client id."""
        return self.instance or self.mqtt.client_id

    @property
    def state_path(self) -> Path:
        """The state directory; a relative one is from the working directory, like shell paths."""
        return Path(self.state_dir).expanduser()

    def potline(self, potline_id: str) -> PotlineConfig | None:
        """The configured potline, or None for one that is not in the config."""
        return next((p for p in self.plant.potlines if p.id == potline_id), None)

    def targets_for(self, potline_id: str) -> Targets:
        """The plant's targets with the potline's overrides; an unknown potline gets the plant's."""
        potline = self.potline(potline_id)
        if potline is None:
            return self.targets
        return self.targets.model_copy(update=potline.targets.model_dump(exclude_none=True))

    @staticmethod
    def secret(env_name: str | None) -> str | None:
        """See the module-level ``secret``; here so that callers holding a config need no import."""
        return secret(env_name)


def secret(env_name: str | None) -> str | None:
    """The value of a secret's environment variable; None when unnamed, unset or empty.

    Secrets are read when a client is built and never stored in the config, so they cannot
    end up in a repr, a dump or a log line.
    """
    return (os.environ.get(env_name) or None) if env_name else None


def load_config(path: str | Path) -> Config:
    """Load the config file and the rules beside it, or raise ``ConfigError`` with every issue."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError([_missing_file(source)])
    settings, _, issues = _load_file(source, ConfigFile)
    rules, rule_issues = _load_rules(source.parent / RULES_DIR)
    issues += rule_issues
    if settings is None or rules is None or issues:
        raise ConfigError(issues)
    return Config(**dict(settings), source=source, rules=rules)


def load_rules(config_path: str | Path) -> Rules:
    """The rules beside a config file, or ``ConfigError`` with every issue (for a reload)."""
    rules, issues = _load_rules(Path(config_path).parent / RULES_DIR)
    if rules is None or issues:
        raise ConfigError(issues)
    return rules


def check(path: str | Path) -> list[ConfigIssue]:
    """Every issue of the config and its rules, empty when all is well (``cellmon check``)."""
    try:
        load_config(path)
    except ConfigError as err:
        return err.issues
    return []


def _missing_file(source: Path) -> ConfigIssue:
    where = "" if source.is_absolute() else f" (relative to {Path.cwd()})"
    problem = "is not a file" if source.exists() else "no such file"
    return ConfigIssue(str(source), 0, "file", problem + where)


M = TypeVar("M", bound=Section)


def _load_file(path: Path, model: type[M]) -> tuple[M | None, YamlDoc | None, list[ConfigIssue]]:
    """A file validated against its model, with all of its issues in line order."""
    try:
        doc = load_yaml(path)
    except ConfigError as err:
        return None, None, err.issues
    value: M | None = None
    issues = list(doc.issues)
    try:
        value = model.model_validate({} if doc.data is None else doc.data)
    except ValidationError as err:
        issues += [_issue(model, doc, error["loc"], error) for error in err.errors()]
    return value, doc, sorted(issues, key=lambda issue: issue.line)


def _load_rules(directory: Path) -> tuple[Rules | None, list[ConfigIssue]]:
    """Merge the lists of every rules file, remembering each item's file and position there."""
    issues = [
        ConfigIssue(str(p), 0, "file", "not read: rules files end in .yaml")
        for p in sorted(directory.glob("*.yml"))
    ]
    merged: dict[str, list[Any]] = {field: [] for field in RulesFile.model_fields}
    origins: dict[str, list[tuple[YamlDoc, int]]] = {field: [] for field in merged}
    for path in sorted(directory.glob("*.yaml")):
        part, doc, found = _load_file(path, RulesFile)
        issues += found
        if part is None or doc is None:
            continue
        for field, items in merged.items():
            items += getattr(part, field)
            origins[field] += [(doc, i) for i in range(len(getattr(part, field)))]
    if issues:
        return None, issues
    try:
        return Rules(**merged), []
    except ValidationError as err:
        return None, [_merged_issue(directory, origins, error) for error in err.errors()]


def _merged_issue(
    directory: Path, origins: dict[str, list[tuple[YamlDoc, int]]], error: ErrorDetails
) -> ConfigIssue:
    """Point an error in the merged rules back to the file and line the rule came from."""
    loc = error["loc"]
    if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
        doc, i = origins[loc[0]][loc[1]]
        return _issue(RulesFile, doc, (loc[0], i, *loc[2:]), error)
    return ConfigIssue(f"{directory}/*.yaml", 0, dotted(loc), _message(Rules, loc, error))


def _issue(model: type[Section], doc: YamlDoc, loc: KeyPath, error: ErrorDetails) -> ConfigIssue:
    return ConfigIssue(doc.file, doc.line_of(loc), dotted(loc), _message(model, loc, error))


# From pydantic's wording to the engineer's.

EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _message(model: type[Section], loc: KeyPath, error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error["input"]
    holder, field = _field_at(model, loc)
    secret_key = str(loc[-1] if loc else "").endswith("_env")  # its value may be a secret
    got = "" if secret_key else f", got {_show(value)}"
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return _unknown_key(str(loc[-1]), holder)
    if kind in EXPECTED:
        return f"expected {EXPECTED[kind]}{got}{'' if secret_key else _quote_hint(kind, value)}"
    if kind in BOUND_ERRORS:
        return f"must be {_bounds(field, ctx)}{got}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}{got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "finite_number":
        return f"must be a finite number{got}"
    if kind == "value_error":
        return str(ctx["error"])
    return error["msg"]


def _show(value: Any) -> str:
    """A value as it looks in YAML, so the engineer recognises what they wrote."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _quote_hint(kind: str, value: Any) -> str:
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return f' (write it in quotes: "{value}")'
    return ""


def _unknown_key(key: str, holder: type[BaseModel] | None) -> str:
    """Typos are the commonest mistake in a config: suggest the key that was meant."""
    names = list(holder.model_fields) if holder else []
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of: {', '.join(names)}" if names else "unknown key"


def _bounds(field: FieldInfo | None, ctx: dict[str, Any]) -> str:
    """All the bounds of a field, so ``0 < x <= 1`` reads as one rule, not two errors."""
    found = {
        n: v
        for n, _ in BOUNDS
        for m in (field.metadata if field else [])
        if (v := getattr(m, n, None)) is not None
    }
    if not found:
        found = {n: ctx[n] for n, _ in BOUNDS if n in ctx}
    return " and ".join(f"{symbol} {_number(found[n])}" for n, symbol in BOUNDS if n in found)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _field_at(
    model: type[BaseModel], loc: KeyPath
) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model holding the last key of ``loc``, and that key's field when it is one."""
    holder: type[BaseModel] | None = None
    field: FieldInfo | None = None
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if get_origin(current) is list and args else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None, None
        holder, field = current, current.model_fields.get(part)
        current = field.annotation if field else None
    return holder, field


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and from ``X | None``."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation
