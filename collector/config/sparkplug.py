"""The ``sparkplug`` inputs of the rules files: which edge nodes to read, and their names.

A Sparkplug B edge node names things its own way: the potline may be the group, a section
gateway the edge node, a pot the device or the prefix of a metric name (``Pot117/Voltage``).
An input says where each id is, which metric feeds which contract field in what unit (the
units and scales of the JSON inputs), and which metrics are events.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from collector.config.inputs import FIELD_NAME, RAW_FIELDS, Conversion, unit_problems
from collector.config.schema import LevelName, NonEmpty, Positive, Section, fail
from collector.config.yamlsource import KeyPath
from processors.rules.expression_syntax import SAMPLE_FIELDS

ID_PLACES = ("group", "edge_node", "device", "metric_prefix")
EVENT_FIELDS = {
    "anode_change": ("anode", "block", "butt_mm", "crew"),
    "metal_tap": ("metal_kg",),
}


def _pattern(value: str) -> str:
    try:
        compiled = re.compile(value)
    except re.error as err:
        msg = f"not a regular expression: {err}"
        raise ValueError(msg) from err
    if compiled.groups > 1:
        msg = f"has {compiled.groups} groups; the id is the whole match or its one group"
        raise ValueError(msg)
    return value


def _place_shorthand(value: Any) -> Any:
    """``cell: device`` is short for ``cell: {from: device}``."""
    return {"from": value} if isinstance(value, str) else value


def _name_shorthand(value: Any) -> Any:
    """``cell_voltage_v: Voltage`` is short for ``cell_voltage_v: {name: Voltage}``."""
    return {"name": value} if isinstance(value, str) else value


class IdSource(Section):
    """Where a potline or cell id is: a part of the topic, or the prefix of metric names."""

    from_: Literal["group", "edge_node", "device", "metric_prefix"] = Field(alias="from")
    pattern: Annotated[str, AfterValidator(_pattern)] | None = None

    def read(self, text: str) -> str | None:
        """The id in ``text``: the pattern's group or match, or all of it; None if it fails."""
        if self.pattern is None:
            return text
        found = re.search(self.pattern, text)
        if found is None:
            return None
        return found.group(1) if found.re.groups else found.group(0)


class MetricSource(Conversion):
    """The metric that feeds a field (its name after any id prefix), and in what unit."""

    name: NonEmpty


Place = Annotated[IdSource, BeforeValidator(_place_shorthand)]
Metric = Annotated[MetricSource, BeforeValidator(_name_shorthand)]


class EventSource(Section):
    """An event carried as metrics: sent when ``when`` is, with its fields from metrics."""

    when: NonEmpty
    fields: dict[str, Metric] = Field(default_factory=dict)


class SparkplugInput(Section):
    """A Sparkplug B 3.0 subscription of this host application to some edge nodes."""

    name: NonEmpty
    group: LevelName | None = None  # None: every group
    edge_nodes: list[LevelName] = Field(default_factory=list)  # empty: every edge node
    potline: Place
    cell: Place
    prefix_separator: NonEmpty = "/"
    metrics: dict[str, Metric] = Field(default_factory=dict)
    events: dict[NonEmpty, EventSource] = Field(default_factory=dict)
    qos: Literal[0, 1] = 1
    rebirth_interval_s: Positive = 10.0
    primary_host: LevelName | None = None

    @model_validator(mode="after")
    def _names(self) -> SparkplugInput:
        problems = _metric_problems(self) + _event_problems(self)
        if "cell_voltage_v" not in self.metrics or "line_current_ka" not in self.metrics:
            problems.append(
                (("metrics",), "needs cell_voltage_v and line_current_ka: a sample has both")
            )
        if self.cell.from_ == "group":
            problems.append((("cell", "from"), "a group holds a potline, not one cell"))
        if self.group is None and self.potline.from_ != "group":
            message = "every group is read: say which (group: <id>), or take the potline from it"
            problems.append((("group",), message))
        if problems:
            fail(problems, self)
        return self

    def uses_prefix(self) -> bool:
        """Whether metric names start with an id (``Pot117/Voltage``)."""
        return "metric_prefix" in (self.potline.from_, self.cell.from_)


def _metric_problems(rule: SparkplugInput) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    for target, source in rule.metrics.items():
        where: KeyPath = ("metrics", target)
        if target == "ts" or target in RAW_FIELDS:
            problems.append((where, "the time is the metric's timestamp (or the payload's)"))
        elif target not in SAMPLE_FIELDS and not FIELD_NAME.fullmatch(target):
            known = ", ".join(SAMPLE_FIELDS)
            problems.append(
                (where, f"{target!r} is not a field name; fields: {known}, or a new name")
            )
        problems += [((*where, k), m) for k, m in unit_problems(target, source)]
    return problems


def _event_problems(rule: SparkplugInput) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    for kind, source in rule.events.items():
        allowed = EVENT_FIELDS.get(kind)
        for target, field in source.fields.items():
            where: KeyPath = ("events", kind, "fields", target)
            if allowed is not None and target not in allowed:
                problems.append((where, f"{kind} has {', '.join(allowed)}"))
            problems += [((*where, k), m) for k, m in unit_problems(target, field)]
    return problems
