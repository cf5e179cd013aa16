"""Payload decoding and validation to contract section 1.

Runs in the MQTT thread for every message, so it is written for speed: one orjson parse,
type checks by identity, and no exceptions on the good path. A bad object is turned into
a ``Rejection`` with a stable reason code (counted) and a human detail (dead-lettered);
in an array the good objects are kept.

Whatever is accepted must be storable as it is, in the journal (orjson) and in the line
protocol (contract 5.5): so the depth is bounded before anything parses it, numbers fit a
float, strings are valid UTF-8, and keys and tag values hold no control character. Any
other exception is turned into a ``decode_error`` rejection of the message: no payload can
raise out of ``Decoder.decode``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import model_validator

from collector.config.schema import Count, NonNegative, Positive, Section, fail
from collector.source.checks import check_key, event, is_number, number
from collector.source.payload import (
    MAX_DEPTH,
    Invalid,
    OutOfRange,
    check_storable,
    depth,
    dump,
    lenient_json,
    parse_ts,
)
from collector.source.sparkplug.topics import is_state
from collector.source.sparkplug.topics import parse as sparkplug_topic
from collector.source.topics import Route, TopicRouter

if TYPE_CHECKING:  # built by ``collector.build``: protobuf stays out of the worker
    from collector.source.sparkplug.host import Host

_MIN_TS_NS = 946_684_800_000_000_000  # 2000-01-01: earlier means an unset controller clock
_TELEMETRY_KEYS = frozenset(("ts", "cell_voltage_v", "line_current_ka"))
_OPTIONAL_NUMBERS = ("bath_temp_c", "noise_uohm")
_RESERVED_FIELDS = frozenset(("time", "voltage_v", "current_ka"))
_KEY_CACHE_LIMIT = 10_000

SampleRow = tuple[str, str, int, float, float, dict[str, float] | None, int | None]
"""(potline, cell, ts ns, V, kA, extra fields, lag ms): the lag is arrival − ``ts`` for a
live sample (a single object over MQTT), None for an untimed one (contract 6.5)."""
EventRow = tuple[str, str, int, str, dict[str, Any]]


class IngestConfig(Section):
    """Limits of the source stage.

    With paho, ``ack_batch`` is the broker's window of unacknowledged QoS 1 messages
    (Mosquitto: 20), and a group is committed when it is full: a larger group would stall
    the broker. The MQTT v5 client asks for ``mqtt.receive_maximum`` instead. Either way a
    group is committed once its oldest message has waited ``ack_interval_ms``.
    """

    ack_batch: Count = 20
    ack_interval_ms: Positive = 100.0
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


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message, or one object of an array, that was refused, and why."""

    topic: str
    reason: str
    detail: str
    payload: bytes


@dataclass(slots=True)
class Decoded:
    """What the decoder made of a run of messages; the ingest flushes it as one batch."""

    samples: list[SampleRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    foreign: int = 0  # objects of a potline the instance does not own: not stored
    counts: Counter[str] = field(default_factory=Counter)  # the Sparkplug host's counters
    commands: list[tuple[str, bytes]] = field(default_factory=list)  # to publish (rebirths)

    def clear(self) -> None:
        """Empty the buffer after it was committed."""
        self.samples.clear()
        self.events.clear()
        self.rejections.clear()
        self.foreign = 0
        self.counts.clear()


class Decoder:
    """Turns (topic, payload) into sample and event rows or rejections."""

    def __init__(
        self, router: TopicRouter, limits: IngestConfig, sparkplug: Host | None = None
    ) -> None:
        """``sparkplug``: the host application of the rules' Sparkplug inputs, if any."""
        self.router = router
        self.limits = limits
        self.sparkplug = sparkplug
        self._future_ns = int(limits.future_tolerance_s * 1e9)
        self._keys: set[str] = set()
        self._owned = router.potlines

    def decode(self, topic: str, payload: bytes, now_ns: int, out: Decoded) -> None:
        """Decode one message into ``out``; never raises.

        An exception no check foresaw rejects the whole message as ``decode_error``, and
        whatever its objects had added to ``out`` is taken back, so the counts add up.
        """
        marks = len(out.samples), len(out.events), len(out.rejections), out.foreign
        try:
            self._decode(topic, payload, now_ns, out)
        except Exception as err:
            del out.samples[marks[0] :], out.events[marks[1] :], out.rejections[marks[2] :]
            out.foreign = marks[3]
            detail = f"{type(err).__name__}: {err}"
            out.rejections.append(Rejection(topic, "decode_error", detail, payload))

    def subscriptions(self) -> dict[str, int]:
        """Every MQTT filter of the inputs for the owned potlines, with its QoS."""
        subscriptions = self.router.subscriptions()
        if self.sparkplug is not None:
            subscriptions |= self.sparkplug.subscriptions(self._owned)
        return subscriptions

    def input_name(self, topic: str) -> str:
        """The name of the input that reads a topic ("" for none): for reports."""
        route = self.router.route(topic)
        if route is not None:
            return route.input
        parsed = sparkplug_topic(topic) if self.sparkplug is not None else None
        found = (
            None if parsed is None or self.sparkplug is None else self.sparkplug.input_for(parsed)
        )
        return "" if found is None else found.rule.name

    def primary_host(self) -> str | None:
        """The Sparkplug host id to announce as primary host, if an input names one."""
        return None if self.sparkplug is None else self.sparkplug.primary_host

    def adopt(self, old: Decoder) -> None:
        """Keep what the decoder of the previous rules knew of the Sparkplug edge nodes."""
        if self.sparkplug is not None and old.sparkplug is not None:
            self.sparkplug.adopt(old.sparkplug)

    def _decode(self, topic: str, payload: bytes, now_ns: int, out: Decoded) -> None:
        route = self.router.route(topic)
        if route is None:
            if not self._sparkplug(topic, payload, now_ns, out):
                reason = "topic matches no input"
                out.rejections.append(Rejection(topic, "bad_topic", reason, payload))
            return
        if self._too_large(topic, payload, out):
            return
        if payload.count(b"{") + payload.count(b"[") > MAX_DEPTH and depth(payload) > MAX_DEPTH:
            detail = f"payload nested deeper than {MAX_DEPTH} levels"
            out.rejections.append(Rejection(topic, "too_deep", detail, payload))
            return
        lenient = False
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            try:
                doc = lenient_json(payload, err)
            except Invalid as bad:
                out.rejections.append(Rejection(topic, bad.reason, bad.detail, payload))
                return
            lenient = True
        if route.mapping is not None:
            try:
                doc = route.mapping.locate(doc)
            except Invalid as bad:
                out.rejections.append(Rejection(topic, bad.reason, bad.detail, payload))
                return
        if type(doc) is list:
            for obj in doc:
                self._one(
                    route, topic, obj, now_ns, out, single=False, payload=payload, lenient=lenient
                )
        else:
            self._one(route, topic, doc, now_ns, out, single=True, payload=payload, lenient=lenient)

    def _sparkplug(self, topic: str, payload: bytes, now_ns: int, out: Decoded) -> bool:
        """Hand a Sparkplug message to the host application; False if it is none it reads."""
        if self.sparkplug is None:
            return False
        parsed = sparkplug_topic(topic)
        if parsed is None:
            return is_state(topic)  # a host's STATE, ours too: not input

        def validate(route: Route, source: str, obj: dict[str, Any]) -> None:
            self.decode_object(route, source, obj, now_ns, out)

        if self._too_large(topic, payload, out):
            return True
        outcome = self.sparkplug.handle(parsed, payload, now_ns, validate)
        if outcome is None:
            return False
        out.rejections += [Rejection(topic, *r) for r in outcome.rejections]
        out.counts.update(outcome.counts)
        out.commands += outcome.commands
        return True

    def _too_large(self, topic: str, payload: bytes, out: Decoded) -> bool:
        if len(payload) <= self.limits.max_payload_bytes:
            return False
        detail = f"payload of {len(payload)} bytes exceeds {self.limits.max_payload_bytes}"
        out.rejections.append(Rejection(topic, "too_large", detail, payload))
        return True

    def decode_object(self, route: Route, source: str, obj: Any, now_ns: int, out: Decoded) -> None:
        """Validate one object that did not come over MQTT (a replayed row) exactly like live.

        ``source`` stands in for the topic in rejections.
        """
        self._one(route, source, obj, now_ns, out, single=False, payload=b"", lenient=True)

    def _one(
        self,
        route: Route,
        topic: str,
        obj: Any,
        now_ns: int,
        out: Decoded,
        *,
        single: bool,
        payload: bytes,
        lenient: bool,
    ) -> None:
        """Validate one object; ``lenient``: it did not come from orjson, so check its text."""
        try:
            if type(obj) is not dict:
                raise Invalid("not_object", f"expected a JSON object, got {type(obj).__name__}")
            if lenient:
                check_storable(obj)
            where = (route.potline, route.cell)
            if route.mapping is None:
                fields = obj
            else:
                fields = route.mapping.apply(obj)
                where = route.mapping.where(fields, where)
            if where[0] not in self._owned:
                out.foreign += 1  # another instance's: neither stored nor dead-lettered
                return
            ts_ns = parse_ts(fields["ts"]) if "ts" in fields else _missing("ts")
            self._check_time(ts_ns, now_ns)
            if route.kind == "telemetry":
                lag_ms = (now_ns - ts_ns) // 1_000_000 if single else None
                out.samples.append(self._telemetry(where, fields, ts_ns, lag_ms))
            else:
                out.events.append((*where, ts_ns, *event(fields)))
        except Invalid as bad:
            raw = payload if single else dump(obj)
            detail = bad.detail if route.mapping is None else route.mapping.relabel(bad.detail)
            out.rejections.append(Rejection(topic, bad.reason, detail, raw))
        except Exception as err:  # a case no check foresaw: this object only
            raw = payload if single else dump(obj)
            detail = f"{type(err).__name__}: {err}"
            out.rejections.append(Rejection(topic, "decode_error", detail, raw))

    def _check_time(self, ts_ns: int, now_ns: int) -> None:
        if ts_ns > now_ns + self._future_ns:
            ahead = (ts_ns - now_ns) // 1_000_000_000  # an integer: ts may be huge
            raise Invalid("future_ts", f"ts: {ahead} s in the future")
        if ts_ns < _MIN_TS_NS:
            raise Invalid("out_of_bounds", "ts: before 2000-01-01 (controller clock not set?)")

    def _telemetry(
        self, where: tuple[str, str], obj: dict[str, Any], ts_ns: int, lag_ms: int | None
    ) -> SampleRow:
        lim = self.limits
        v = number(obj, "cell_voltage_v", lim.voltage_min_v, lim.voltage_max_v)
        i = number(obj, "line_current_ka", lim.current_min_ka, lim.current_max_ka)
        extra: dict[str, float] | None = None
        if len(obj) > 3:
            for key in _OPTIONAL_NUMBERS:
                if key in obj and not is_number(obj[key]):
                    if type(obj[key]) is OutOfRange:  # contract 5.5, as for the required ones
                        raise obj[key].invalid(key)
                    raise Invalid("wrong_type", f"{key}: expected a number, got {obj[key]!r}")
            extra = {}
            for key, x in obj.items():
                if key in _TELEMETRY_KEYS or key in _RESERVED_FIELDS:
                    continue
                if not is_number(x):
                    if type(x) is OutOfRange:
                        raise x.invalid(key)
                    continue
                if key not in self._keys:
                    self._check_key(key)
                x = float(x)
                if not math.isfinite(x):
                    raise Invalid("non_finite", f"{key}: {x} is not a finite number")
                extra[key] = x
        return (*where, ts_ns, v, i, extra, lag_ms)

    def _check_key(self, key: str) -> None:
        """A field key seen for the first time; the good ones are remembered."""
        check_key(key)
        if len(self._keys) >= _KEY_CACHE_LIMIT:
            self._keys.clear()
        self._keys.add(key)


def _missing(key: str) -> int:
    raise Invalid("missing_key", f"{key}: required key is missing")
