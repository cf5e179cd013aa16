"""How one Sparkplug input names things: its edge nodes, ids, and metrics as contract fields.

Compiled once from the rules' ``sparkplug`` input. The field and event mappings are the
JSON inputs' ``InputMapping``: a sample's metrics are gathered into one object keyed by
metric name and go through the same conversion and the same validation, so a Sparkplug
value out of bounds is rejected with the JSON inputs' reason, naming the metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.config.sparkplug import IdSource, MetricSource, SparkplugInput
from collector.source.ids import valid_level
from collector.source.mapping import FieldMap, InputMapping, conversion
from collector.source.sparkplug.topics import NAMESPACE, READ, Topic


@dataclass(frozen=True, slots=True)
class Names:
    """A metric as an input reads it: the cell it is of, and its name within the cell."""

    potline: str | None  # None: the id is not where the input says (a bad id)
    cell: str | None
    metric: str


@dataclass(frozen=True)
class Mapped:
    """Metrics read as one contract object: their names, and the mapping to its fields."""

    mapping: InputMapping
    metrics: frozenset[str]

    @classmethod
    def of(cls, fields: dict[str, MetricSource]) -> Mapped:
        """Built once from an input's ``metrics`` or an event's ``fields``."""
        mapping = _mapping(fields)
        return cls(mapping, frozenset(f.path[0] for f in mapping.fields))


@dataclass(frozen=True)
class CompiledInput:
    """A ``sparkplug`` input, ready for the host application."""

    rule: SparkplugInput
    samples: Mapped
    events: dict[str, tuple[str, Mapped]]  # type -> (its ``when`` metric, its metrics)
    known: frozenset[str]  # the metrics (local names) that feed a field or an event

    def reads(self, topic: Topic) -> bool:
        """Whether a topic is of a group and edge node this input reads."""
        rule = self.rule
        return (rule.group is None or topic.group == rule.group) and (
            not rule.edge_nodes or topic.edge_node in rule.edge_nodes
        )

    def subscriptions(self, potlines: frozenset[str]) -> list[str]:
        """MQTT filters of the message types a host reads, in the groups this input reads.

        The group's, or every owned potline's when the group is the potline. Only births,
        deaths and data: the whole namespace would bring back the host's own rebirth
        commands (NCMD) and STATE, which are no edge node's input.
        """
        rule = self.rule
        if rule.group is not None:
            groups = [rule.group]
        elif rule.potline.from_ == "group" and rule.potline.pattern is None:
            groups = sorted(potlines)
        else:
            groups = ["+"]
        return [f"{NAMESPACE}/{g}/{kind}/#" for g in groups for kind in READ]

    def names(self, topic: Topic, device: str | None, metric: str) -> Names:
        """Potline, cell and local name of a metric of ``device`` (None: the node's own)."""
        rule = self.rule
        local, prefix = metric, None
        if rule.uses_prefix():
            prefix, sep, rest = metric.partition(rule.prefix_separator)
            local = rest if sep else metric
            prefix = prefix if sep else None
        places = {"group": topic.group, "edge_node": topic.edge_node, "device": device}
        places["metric_prefix"] = prefix
        return Names(_id(rule.potline, places), _id(rule.cell, places), local)


def _id(source: IdSource, places: dict[str, str | None]) -> str | None:
    text = places[source.from_]
    found = None if text is None else source.read(text)
    return found if found is not None and valid_level(found) else None


def compile_input(rule: SparkplugInput) -> CompiledInput:
    """The input's mappings, built once."""
    events = {kind: (source.when, Mapped.of(source.fields)) for kind, source in rule.events.items()}
    samples = Mapped.of(rule.metrics)
    known = samples.metrics.union(*(m.metrics | {when} for when, m in events.values()))
    return CompiledInput(rule, samples, events, known)


def _mapping(fields: dict[str, MetricSource]) -> InputMapping:
    """An ``InputMapping`` whose keys are metric names (which may hold dots and spaces)."""
    maps = []
    for target, source in fields.items():
        name = source.name
        convert = conversion(target, source.unit, source.scale, source.offset)
        label = f"metric {name!r}" if name == target else f"metric {name!r} (as {target})"
        maps.append(FieldMap(target, (name,), convert, label))
    return InputMapping(
        path=(),
        fields=tuple(maps),
        types={},
        ts_per_s=1_000,
        consumed=frozenset(m.path[0] for m in maps),
        labels={m.target: m.label for m in maps},
    )
