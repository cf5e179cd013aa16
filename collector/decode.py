"""Payload decoding and validation to contract section 1.

Runs in the MQTT thread for every message, so it is written for speed: one orjson parse,
type checks by identity, and no exceptions on the good path. A bad object is turned into
a ``Rejection`` with a stable reason code (counted) and a human detail (dead-lettered);
in an array the good objects are kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from collector.topics import Route, TopicRouter

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MIN_TS_NS = 946_684_800_000_000_000  # 2000-01-01: earlier means an unset controller clock
_TELEMETRY_KEYS = frozenset(("ts", "cell_voltage_v", "line_current_ka"))
_OPTIONAL_NUMBERS = ("bath_temp_c", "noise_uohm")
_RESERVED_FIELDS = frozenset(("time", "voltage_v", "current_ka"))

SampleRow = tuple[str, str, int, float, float, dict[str, float] | None]
EventRow = tuple[str, str, int, str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Limits:
    """The physical bounds and tolerances a payload is checked against."""

    max_payload_bytes: int = 262_144
    future_tolerance_s: float = 300.0
    voltage_min_v: float = 0.0
    voltage_max_v: float = 100.0
    current_min_ka: float = 0.0
    current_max_ka: float = 1000.0


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

    def clear(self) -> None:
        """Empty the buffer after it was committed."""
        self.samples.clear()
        self.events.clear()
        self.rejections.clear()


class Invalid(Exception):
    """Internal signal from a field check: reason code and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _is_number(x: object) -> bool:
    t = type(x)
    return t is float or t is int


def parse_ts(value: object) -> int:
    """Return the UTC nanoseconds of a contract timestamp (epoch ms or RFC 3339 with offset)."""
    if type(value) is int:
        return value * 1_000_000
    if type(value) is str:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise Invalid("bad_ts", f"ts: not an RFC 3339 timestamp: {value!r}") from None
        if dt.tzinfo is None:
            raise Invalid("bad_ts", f"ts: RFC 3339 timestamp needs an offset: {value!r}")
        return ((dt - _EPOCH) // _MICROSECOND) * 1000
    raise Invalid("wrong_type", f"ts: expected epoch ms or an RFC 3339 string, got {value!r}")


class Decoder:
    """Turns (topic, payload) into sample and event rows or rejections."""

    def __init__(self, router: TopicRouter, limits: Limits) -> None:
        self.router = router
        self.limits = limits
        self._future_ns = int(limits.future_tolerance_s * 1e9)

    def decode(self, topic: str, payload: bytes, now_ns: int, out: Decoded) -> None:
        """Decode one message into ``out``; never raises on bad input."""
        route = self.router.route(topic)
        if route is None:
            out.rejections.append(Rejection(topic, "bad_topic", "topic matches no input", payload))
            return
        if len(payload) > self.limits.max_payload_bytes:
            detail = f"payload of {len(payload)} bytes exceeds {self.limits.max_payload_bytes}"
            out.rejections.append(Rejection(topic, "too_large", detail, payload))
            return
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            doc = _lenient_json(topic, payload, err, out)
            if doc is None:
                return
        if route.mapping is not None:
            try:
                doc = route.mapping.locate(doc)
            except Invalid as bad:
                out.rejections.append(Rejection(topic, bad.reason, bad.detail, payload))
                return
        if type(doc) is list:
            for obj in doc:
                self._one(route, topic, obj, now_ns, out, single=False, payload=payload)
        else:
            self._one(route, topic, doc, now_ns, out, single=True, payload=payload)

    def decode_object(self, route: Route, source: str, obj: Any, now_ns: int, out: Decoded) -> None:
        """Validate one object that did not come over MQTT (a replayed row) exactly like live.

        ``source`` stands in for the topic in rejections.
        """
        self._one(route, source, obj, now_ns, out, single=False, payload=b"")

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
    ) -> None:
        try:
            if type(obj) is not dict:
                raise Invalid("not_object", f"expected a JSON object, got {type(obj).__name__}")
            where = (route.potline, route.cell)
            if route.mapping is None:
                fields = obj
            else:
                fields = route.mapping.apply(obj)
                where = route.mapping.where(fields, where)
            ts_ns = parse_ts(fields["ts"]) if "ts" in fields else _missing("ts")
            self._check_time(ts_ns, now_ns)
            if route.kind == "telemetry":
                out.samples.append(self._telemetry(where, fields, ts_ns))
            else:
                out.events.append(_event(where, fields, ts_ns))
        except Invalid as bad:
            raw = payload if single else _dump(obj)
            detail = bad.detail if route.mapping is None else route.mapping.relabel(bad.detail)
            out.rejections.append(Rejection(topic, bad.reason, detail, raw))

    def _check_time(self, ts_ns: int, now_ns: int) -> None:
        if ts_ns > now_ns + self._future_ns:
            ahead = (ts_ns - now_ns) / 1e9
            raise Invalid("future_ts", f"ts: {ahead:.0f} s in the future")
        if ts_ns < _MIN_TS_NS:
            raise Invalid("out_of_bounds", "ts: before 2000-01-01 (controller clock not set?)")

    def _telemetry(self, where: tuple[str, str], obj: dict[str, Any], ts_ns: int) -> SampleRow:
        lim = self.limits
        v = _number(obj, "cell_voltage_v", lim.voltage_min_v, lim.voltage_max_v)
        i = _number(obj, "line_current_ka", lim.current_min_ka, lim.current_max_ka)
        extra: dict[str, float] | None = None
        if len(obj) > 3:
            for key in _OPTIONAL_NUMBERS:
                if key in obj and not _is_number(obj[key]):
                    raise Invalid("wrong_type", f"{key}: expected a number, got {obj[key]!r}")
            extra = {}
            for key, x in obj.items():
                if key in _TELEMETRY_KEYS or key in _RESERVED_FIELDS or not _is_number(x):
                    continue
                if not math.isfinite(x):
                    raise Invalid("non_finite", f"{key}: {x} is not a finite number")
                extra[key] = float(x)
        return (*where, ts_ns, v, i, extra)


def _missing(key: str) -> int:
    raise Invalid("missing_key", f"{key}: required key is missing")


def _number(obj: dict[str, Any], key: str, low: float, high: float) -> float:
    try:
        x = obj[key]
    except KeyError:
        raise Invalid("missing_key", f"{key}: required key is missing") from None
    if not _is_number(x):
        raise Invalid("wrong_type", f"{key}: expected a number, got {x!r}")
    if not math.isfinite(x):
        raise Invalid("non_finite", f"{key}: {x} is not a finite number")
    if not low <= x <= high:
        raise Invalid("out_of_bounds", f"{key}: {x} outside {low:g}..{high:g}")
    return float(x)


def _event(where: tuple[str, str], obj: dict[str, Any], ts_ns: int) -> EventRow:
    kind = obj.get("type")
    if kind is None:
        raise Invalid("missing_key", "type: required key is missing")
    if type(kind) is not str or not kind:
        raise Invalid("wrong_type", f"type: expected a non-empty string, got {kind!r}")
    data = {k: v for k, v in obj.items() if k not in ("ts", "type")}
    for key, x in data.items():
        if type(x) is float and not math.isfinite(x):
            raise Invalid("non_finite", f"{key}: {x} is not a finite number")
    if kind == "anode_change":
        _check_anode_change(data)
    elif kind == "metal_tap":
        _number(data, "metal_kg", 0.0, math.inf)
        if data["metal_kg"] <= 0:
            raise Invalid("out_of_bounds", f"metal_kg: must be > 0, got {data['metal_kg']}")
    return (*where, ts_ns, kind, data)


def _check_anode_change(data: dict[str, Any]) -> None:
    anode = data.get("anode")
    if anode is None:
        raise Invalid("missing_key", "anode: required key is missing")
    if type(anode) is not int:
        raise Invalid("wrong_type", f"anode: expected an integer, got {anode!r}")
    if anode < 1:
        raise Invalid("out_of_bounds", f"anode: must be >= 1, got {anode}")
    block = data.get("block")
    if block is None:
        raise Invalid("missing_key", "block: required key is missing")
    if type(block) is not str:
        raise Invalid("wrong_type", f"block: expected a string, got {block!r}")
    if "butt_mm" in data:
        _number(data, "butt_mm", 0.0, math.inf)


def _lenient_json(topic: str, payload: bytes, err: Exception, out: Decoded) -> Any:
    """Parse what orjson refused when it is only non-finite numbers, so they can be named.

    ``NaN`` and ``1e999`` are not JSON, but controllers send them; the stdlib parser reads
    them, and the per-object checks then reject just the objects that carry them.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as uerr:
        detail = f"payload is not UTF-8: {uerr}"
        out.rejections.append(Rejection(topic, "not_utf8", detail, payload))
        return None
    try:
        return json.loads(text)
    except ValueError:
        out.rejections.append(Rejection(topic, "not_json", f"payload is not JSON: {err}", payload))
        return None


def _dump(obj: Any) -> bytes:
    """Serialise a rejected array element; the stdlib keeps NaN visible where orjson nulls it."""
    return json.dumps(obj, default=str, ensure_ascii=False).encode()
