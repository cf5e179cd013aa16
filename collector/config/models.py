"""The typed, frozen configuration of cellmon, and its loader with errors that say where.

Everything is validated before anything connects, and all the problems of the config file
and of every rules file (their models are in ``collector.config.rules``) come back together as
``file:line: key: message``, worded for the engineer who edits the YAML rather than for the
programmer who wrote the model. Nothing below this module reads raw YAML.
"""

from __future__ import annotations

import difflib
import os
import types
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from collector.config.rules import Rules, RulesFile
from collector.config.schema import (
    Count,
    EnvName,
    HttpUrl,
    LevelName,
    NonEmpty,
    NonNegative,
    Positive,
    Section,
    ShiftStart,
    fail,
    number,
    show,
    zone,
)
from collector.config.yamlsource import (
    ConfigError,
    ConfigIssue,
    KeyPath,
    YamlDoc,
    dotted,
    load_yaml,
)

__all__ = [
    "AlertsConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "InfluxConfig",
    "IngestConfig",
    "MqttConfig",
    "PlantConfig",
    "PotlineConfig",
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
            fail(problems, self)
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
    """How points leave the journal; the file sink is for the demo and for tests.

    ``shutdown_s`` bounds a stop while the database refuses writes: the points it did not
    take stay in the journal for the next start, and ``cellmon run`` exits 3 to say so.
    """

    type: Literal["influx", "file"] = "influx"
    path: NonEmpty = "points.lp"
    batch_lines: Count = 5000
    flush_interval_s: Positive = 1.0
    max_buffer_mib: Positive = 1024.0
    retry_max_s: Positive = 30.0
    shutdown_s: Positive = 20.0


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

    timezone: Annotated[str, AfterValidator(zone)] = "Asia/Shanghai"
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
            fail(problems, shifts)
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
            fail(problems, potlines)
        return potlines

    @property
    def shift_times(self) -> tuple[time, ...]:
        """The shift starts as times of day, in ``timezone``."""
        return tuple(time(int(s[:2]), int(s[3:])) for s in self.shifts)


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
    got = "" if secret_key else f", got {show(value)}"
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
    return " and ".join(f"{symbol} {number(found[n])}" for n, symbol in BOUNDS if n in found)


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
