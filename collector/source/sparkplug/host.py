"""The host application: what cellmon knows of each Sparkplug B edge node (Sparkplug 3.0).

A Sparkplug edge node declares its metrics once, by name, datatype and alias, in its birth
certificates (NBIRTH for itself, DBIRTH per device) and then sends them by alias; one
sequence number per edge node, 0 at the NBIRTH and +1 mod 256 for every later message, is
what lets a host see that it missed one. So the host keeps per edge node: the session
(``bdSeq``), the last sequence number, what each alias means, which devices are born, and
each metric's last value (data is reported by exception: a message carries what changed).

From that, each message becomes contract objects, one sample per cell and instant with
every mapped field's latest value, and events, validated by the decoder exactly as JSON
payloads are. What cannot be read is counted, never guessed: data of a node or device not
born, an alias no birth declared (``sparkplug_unknown_alias``), a sequence gap
(``sparkplug_seq_gaps``, the messages missing in ``sparkplug_lost``); each is answered
with a rebirth request (NCMD ``Node Control/Rebirth``), at most one per node per
``rebirth_interval_s``. A death (NDEATH of the current session, by ``bdSeq``, or DDEATH)
takes the node or device offline and writes an ``offline`` event for each of its cells, so
they show as stale at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.source.payload import dump
from collector.source.sparkplug.naming import CompiledInput
from collector.source.sparkplug.payload import (
    Datatype,
    Metric,
    Payload,
    PayloadError,
    decode,
    encode,
    typed,
)
from collector.source.sparkplug.topics import BDSEQ, COMMANDS, REBIRTH, MessageType, Topic
from collector.source.topics import Route
from processors.model import OFFLINE

NS_PER_MS = 1_000_000
SEQ_MOD = 256
Validate = Callable[[Route, str, dict[str, Any]], None]
"""The decoder's check of one contract object: (route, source, object)."""


@dataclass(frozen=True, slots=True)
class Declared:
    """What a birth said a metric is."""

    device: str | None  # None: the node's own metric
    name: str
    datatype: int


@dataclass(slots=True)
class Reading:
    """One metric value of a message, resolved to what was declared."""

    declared: Declared
    value: Any
    ts_ms: int
    historical: bool


@dataclass
class Node:
    """A host's memory of one edge node."""

    born: bool = False
    bdseq: int | None = None
    seq: int | None = None
    aliases: dict[int, Declared] = field(default_factory=dict)
    names: dict[tuple[str | None, str], Declared] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    values: dict[tuple[str, str, str], Any] = field(default_factory=dict)  # potline, cell, metric
    rebirth_asked_ns: int | None = None


@dataclass
class Outcome:
    """What one message gave besides contract objects: counts and commands to publish."""

    counts: Counter[str] = field(default_factory=Counter)
    commands: list[tuple[str, bytes]] = field(default_factory=list)
    rejections: list[tuple[str, str, bytes]] = field(default_factory=list)  # reason, detail, raw


class Host:
    """The state machines of every edge node the inputs read."""

    def __init__(self, inputs: Sequence[CompiledInput]) -> None:
        self.inputs = list(inputs)
        self.nodes: dict[tuple[str, str], Node] = {}

    @property
    def primary_host(self) -> str | None:
        """The host id of the STATE messages, from the first input that names one."""
        return next((i.rule.primary_host for i in self.inputs if i.rule.primary_host), None)

    def subscriptions(self, potlines: frozenset[str]) -> dict[str, int]:
        """The MQTT filters of every input, with its QoS."""
        return {f: i.rule.qos for i in self.inputs for f in i.subscriptions(potlines)}

    def adopt(self, old: Host) -> None:
        """Keep what another host learned of the edge nodes (a rules reload)."""
        self.nodes = old.nodes

    def input_for(self, topic: Topic) -> CompiledInput | None:
        """The first input that reads the topic's edge node."""
        return next((i for i in self.inputs if i.reads(topic)), None)

    def handle(
        self, topic: Topic, payload: bytes, now_ns: int, validate: Validate
    ) -> Outcome | None:
        """Take one message; None when no input reads its edge node.

        A command (a host's rebirth request, this one's too) is taken and ignored: it is
        no edge node's input, and a session subscribed before 1.2 to the whole namespace
        still brings them.
        """
        rule = self.input_for(topic)
        if rule is None:
            return None
        out = Outcome()
        if topic.type in COMMANDS:
            return out
        try:
            message = decode(payload)
        except PayloadError as err:
            out.rejections.append(("bad_sparkplug", str(err), payload))
            return out
        node = self.nodes.setdefault((topic.group, topic.edge_node), Node())
        _Message(rule, topic, message, node, now_ns, validate, out).take()
        return out


class _Message:
    """One message applied to its node's state."""

    def __init__(
        self,
        rule: CompiledInput,
        topic: Topic,
        payload: Payload,
        node: Node,
        now_ns: int,
        validate: Validate,
        out: Outcome,
    ) -> None:
        self.rule, self.topic, self.payload, self.node = rule, topic, payload, node
        self.now_ns, self.validate, self.out = now_ns, validate, out
        self.source = str(topic)

    def take(self) -> None:
        kind = self.topic.type
        if kind == MessageType.NBIRTH:
            self._node_birth()
        elif kind == MessageType.NDEATH:
            self._node_death()
        elif not self.node.born:
            self._unknown(len(self.payload.metrics) or 1)  # data or a birth before NBIRTH
        else:
            self._check_seq()
            if kind == MessageType.DBIRTH:
                self._device_birth()
            elif kind == MessageType.DDEATH:
                self._device_death()
            else:
                self._data()

    # births and deaths

    def _node_birth(self) -> None:
        node = self.node
        node.born, node.seq = True, self.payload.seq
        node.bdseq = _bdseq(self.payload.metrics)
        node.aliases.clear()
        node.names.clear()
        node.devices.clear()
        node.values.clear()
        self.out.counts["sparkplug_births"] += 1
        self._emit(self._declare(None))

    def _device_birth(self) -> None:
        device = self.topic.device
        assert device is not None  # a device message names its device (topics.parse)
        for key in [k for k in self.node.names if k[0] == device]:
            del self.node.names[key]
        self.node.devices.add(device)
        self.out.counts["sparkplug_births"] += 1
        self._emit(self._declare(device))

    def _declare(self, device: str | None) -> list[Reading]:
        """Bind each metric's name, alias and datatype; its value is a reading too."""
        readings = []
        for m in self.payload.metrics:
            if m.name is None or m.datatype is None:
                continue  # a birth declares by name and datatype; nothing to bind
            declared = Declared(device, m.name, m.datatype)
            self.node.names[(device, m.name)] = declared
            if m.alias is not None:
                self.node.aliases[m.alias] = declared
            if not m.is_null:
                readings.append(self._reading(declared, m))
        return readings

    def _node_death(self) -> None:
        node = self.node
        if not node.born or _bdseq(self.payload.metrics) != node.bdseq:
            return  # the will of an earlier session, delivered after the new birth
        node.born = False
        self.out.counts["sparkplug_deaths"] += 1
        self._offline(None)

    def _device_death(self) -> None:
        device = self.topic.device
        assert device is not None
        self.node.devices.discard(device)
        self.out.counts["sparkplug_deaths"] += 1
        self._offline(device)

    def _offline(self, device: str | None) -> None:
        """An ``offline`` event for each cell of the node (None) or of one device."""
        declared = [d for d in self.node.names.values() if device is None or d.device == device]
        ts_ms = self.payload.timestamp_ms or self.now_ns // NS_PER_MS
        cells: set[tuple[str, str]] = set()
        for d in declared:
            names = self.rule.names(self.topic, d.device, d.name)
            if names.potline is not None and names.cell is not None:
                cells.add((names.potline, names.cell))
        for potline, cell in sorted(cells):
            obj = {"ts": ts_ms, "type": OFFLINE, "message": self.topic.type.value}
            obj["edge_node"] = self.topic.edge_node
            self.validate(Route("event", potline, cell), self.source, obj)

    # data

    def _check_seq(self) -> None:
        node, seq = self.node, self.payload.seq
        if seq is None or node.seq is None:
            node.seq = seq if seq is not None else node.seq
            return
        expected = (node.seq + 1) % SEQ_MOD
        if seq != expected:
            self.out.counts["sparkplug_seq_gaps"] += 1
            self.out.counts["sparkplug_lost"] += (seq - expected) % SEQ_MOD
            self._ask_rebirth()
        node.seq = seq

    def _data(self) -> None:
        device = self.topic.device
        if device is not None and device not in self.node.devices:
            self._unknown(len(self.payload.metrics) or 1)  # data of a device not born
            return
        readings, unknown = [], 0
        for m in self.payload.metrics:
            declared = self._resolve(device, m)
            if declared is None:
                unknown += 1
            elif not m.is_null:
                readings.append(self._reading(declared, m))
        if unknown:
            self._unknown(unknown)
        self._emit(readings)

    def _resolve(self, device: str | None, m: Metric) -> Declared | None:
        node = self.node
        if m.alias is not None:
            return node.aliases.get(m.alias)
        return None if m.name is None else node.names.get((device, m.name))

    def _reading(self, declared: Declared, m: Metric) -> Reading:
        ts_ms = m.timestamp_ms or self.payload.timestamp_ms or self.now_ns // NS_PER_MS
        value = typed(m.datatype if m.datatype is not None else declared.datatype, m.value)
        return Reading(declared, value, ts_ms, m.is_historical)

    def _unknown(self, metrics: int) -> None:
        self.out.counts["sparkplug_unknown_alias"] += metrics
        self._ask_rebirth()

    def _ask_rebirth(self) -> None:
        node, interval_ns = self.node, int(self.rule.rule.rebirth_interval_s * 1e9)
        if node.rebirth_asked_ns is not None and self.now_ns - node.rebirth_asked_ns < interval_ns:
            return
        node.rebirth_asked_ns = self.now_ns
        command = Topic(self.topic.group, MessageType.NCMD, self.topic.edge_node)
        ts_ms = self.now_ns // NS_PER_MS
        body = encode(ts_ms, None, [Metric(name=REBIRTH, datatype=Datatype.BOOLEAN, value=True)])
        self.out.commands.append((str(command), body))
        self.out.counts["sparkplug_rebirth_requests"] += 1

    # contract objects

    def _emit(self, readings: Iterable[Reading]) -> None:
        """Samples and events of the readings: per cell and instant, live then historical."""
        groups: dict[tuple[str, str, int, bool], dict[str, Any]] = {}
        for r in readings:
            names = self.rule.names(self.topic, r.declared.device, r.declared.name)
            if names.metric not in self.rule.known:
                continue
            if names.potline is None or names.cell is None:
                detail = f"metric {r.declared.name!r}: no potline or cell id where the input says"
                self.out.rejections.append(("bad_id", detail, _dump(r)))
                continue
            key = (names.potline, names.cell, r.ts_ms, r.historical)
            groups.setdefault(key, {})[names.metric] = r.value
        for (potline, cell, ts_ms, historical), values in sorted(groups.items()):
            self._sample(potline, cell, ts_ms, values, historical)
            self._events(potline, cell, ts_ms, values)

    def _sample(
        self, potline: str, cell: str, ts_ms: int, values: dict[str, Any], historical: bool
    ) -> None:
        mapping, fields = self.rule.samples.mapping, self.rule.samples.metrics
        if not fields & values.keys():
            return  # only event metrics at this instant
        latest = self.node.values
        if not historical:  # reported by exception: the rest is as last reported
            for name in fields - values.keys():
                if (potline, cell, name) in latest:
                    values[name] = latest[(potline, cell, name)]
            for name in fields & values.keys():
                latest[(potline, cell, name)] = values[name]
        obj = {"ts": ts_ms, **{k: v for k, v in values.items() if k in fields}}
        route = Route("telemetry", potline, cell, mapping, self.rule.rule.name)
        self.validate(route, self.source, obj)

    def _events(self, potline: str, cell: str, ts_ms: int, values: dict[str, Any]) -> None:
        for kind, (when, event) in self.rule.events.items():
            if when not in values:
                continue
            fields = {k: v for k, v in values.items() if k in event.metrics}
            obj = {"ts": ts_ms, "type": kind, **fields}
            route = Route("event", potline, cell, event.mapping, self.rule.rule.name)
            self.validate(route, self.source, obj)


def _bdseq(metrics: Iterable[Metric]) -> int | None:
    found = next((m for m in metrics if m.name == BDSEQ), None)
    return None if found is None or type(found.value) is not int else found.value


def _dump(reading: Reading) -> bytes:
    return dump(
        {"metric": reading.declared.name, "value": reading.value, "timestamp": reading.ts_ms}
    )
