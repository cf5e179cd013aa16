"""``cellmon check --sample FILE``: the rules run on a few real payloads, before deploying.

An engineer who adds an input layout, a derived field or an alarm wants to see what it
does to real messages, not only that it validates. The sample file holds messages as the
controllers send them; each goes through the live decoder (input mapping and validation),
the derived fields and the alarms exactly as ``cellmon run`` would take them, and the
report says, per message, which input took it and what came out, or why it was refused.

The sample file is JSON Lines, one message per line::

    {"topic": "smelter/P1/C001/telemetry", "payload": {"ts": 1732400000000, ...}}

``payload`` is the JSON the controller sends (object or array), or a string holding the
raw payload (to try a malformed one); a binary payload (Sparkplug B) is given instead as
``payload_base64``. Sparkplug messages are taken in file order by one host application,
so a birth binds the aliases of the data after it. Blank lines and lines starting with
``#`` are skipped.
Samples are judged whatever their age: the decoder's clock is put past the newest one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from collector import build
from collector.config.models import Config
from collector.config.yamlsource import ConfigError, ConfigIssue
from collector.engine.batch import derived_extra, first_seen, in_order, sample_batch, sample_key
from collector.source.decode import Decoded, EventRow, Rejection, SampleRow
from processors.model import Batch, Point, SampleBatch
from processors.rules.alarms import AlarmProcessor
from processors.rules.derived import DerivedProcessor
from processors.rules.expression_syntax import parse_expression, unknown_names

FAR_FUTURE_NS = 2**62  # the decoder's "now": a sample file is history, never future


@dataclass
class Message:
    """One line of the sample file and what the decoder made of it."""

    line: int
    topic: str
    input: str
    samples: list[SampleRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # the Sparkplug host's
    commands: list[str] = field(default_factory=list)  # topics it would publish to


@dataclass
class Report:
    """Every message, each accepted sample's fields after the derived ones, and the alarms."""

    source: str
    messages: list[Message]
    fields: list[dict[str, float]]  # per accepted sample, in file order
    notes: list[str]  # per accepted sample: "", "duplicate", "late"
    alarms: list[Point]
    derived: dict[str, list[str]]  # derived field -> the names its expression reads
    alarm_rules: list[tuple[str, str]]  # (name, severity)
    settings: dict[str, dict[str, float]]  # per potline, as expressions see them


def read_sample(path: Path) -> list[tuple[int, str, bytes]]:
    """(line, topic, payload bytes) of each message, or ``ConfigError`` naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([ConfigIssue(str(path), 0, "file", f"cannot read: {err}")]) from None
    out, issues = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            issues.append(ConfigIssue(str(path), number, "line", f"not JSON: {err}"))
            continue
        problem = _shape_problem(item)
        if problem:
            issues.append(ConfigIssue(str(path), number, *problem))
            continue
        if "payload_base64" in item:
            try:
                raw = base64.b64decode(item["payload_base64"], validate=True)
            except (binascii.Error, ValueError) as err:
                issues.append(ConfigIssue(str(path), number, "payload_base64", f"{err}"))
                continue
        else:
            payload = item["payload"]
            raw = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        out.append((number, item["topic"], raw))
    if issues:
        raise ConfigError(issues)
    return out


def _shape_problem(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return "line", 'expected an object {"topic": ..., "payload": ...}'
    unknown = sorted(set(item) - {"topic", "payload", "payload_base64"})
    if unknown:
        return unknown[0], "unknown key; expected topic and payload (or payload_base64)"
    if not isinstance(item.get("topic"), str):
        return "topic", "missing, or not a string"
    given = [k for k in ("payload", "payload_base64") if k in item]
    if not given:
        return "payload", "missing"
    if len(given) > 1:
        return "payload_base64", "give payload or payload_base64, not both"
    if given == ["payload_base64"] and not isinstance(item["payload_base64"], str):
        return "payload_base64", "not a string"
    return None


def run_sample(cfg: Config, path: Path) -> Report:
    """Decode every message of the file and apply the rules to what was accepted."""
    dec = build.decoder(cfg)
    messages = []
    for number, topic, payload in read_sample(path):
        out = Decoded()
        dec.decode(topic, payload, FAR_FUTURE_NS, out)
        message = Message(number, topic, dec.input_name(topic), out.samples, out.events)
        message.rejections, message.counts = out.rejections, dict(out.counts)
        message.commands = [command for command, _ in out.commands]
        messages.append(message)
    rows = [s for m in messages for s in m.samples]
    fresh = first_seen([sample_key(p, c, ts) for p, c, ts, *_ in rows])
    notes = ["" if new else "duplicate" for new in fresh]
    keep = [k for k, new in enumerate(fresh) if new]
    batch = _batch([rows[k] for k in keep])
    derived = DerivedProcessor(cfg.rules.derived, build.rule_constants(cfg))
    batch.extra = derived_extra(derived, batch)
    fields: list[dict[str, float]] = [{} for _ in rows]
    for k, e in zip(keep, batch.extra, strict=True):
        fields[k] = dict(e or {})
    ordered, late, _ = in_order(batch, {})
    for k, is_late in zip(keep, late.tolist(), strict=True):
        notes[k] = "late" if is_late else notes[k]
    alarms = AlarmProcessor(cfg.rules.alarms, build.rule_constants(cfg))
    _, points = alarms.apply(Batch(ordered, []), None)
    return Report(
        source=str(path),
        messages=messages,
        fields=fields,
        notes=notes,
        alarms=points,
        derived={d.name: unknown_names(parse_expression(d.expr), ()) for d in cfg.rules.derived},
        alarm_rules=[(a.name, a.severity) for a in cfg.rules.alarms],
        settings=build.rule_constants(cfg),
    )


def _batch(rows: list[SampleRow]) -> SampleBatch:
    names = sorted({(r[0], r[1]) for r in rows})
    index = {c: k for k, c in enumerate(names)}
    return sample_batch(
        names.__getitem__,
        [index[(r[0], r[1])] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
    )


def format_report(report: Report) -> str:
    """The report as the engineer reads it: per message, then per rule."""
    lines: list[str] = []
    k = 0
    for m in report.messages:
        where = f"{report.source}:{m.line}: {m.topic}"
        if m.samples or m.events or m.counts:
            lines.append(f"{where}: input {m.input}: {_count(m)}")
        for s in m.samples:
            lines.append("    " + _sample_line(s, report.fields[k], report.notes[k], report))
            k += 1
        for potline, cell, ts, kind, data in m.events:
            lines.append(f"    {potline}/{cell} {_time(ts)} {kind} {orjson.dumps(data).decode()}")
        for r in m.rejections:
            lines.append(f"{where}: rejected ({r.reason}): {r.detail}")
        lines.extend(f"    would ask for a rebirth on {c}" for c in m.commands)
    lines.append("")
    lines.append("alarms:" if report.alarm_rules else "alarms: none configured")
    for name, severity in report.alarm_rules:
        mine = [p for p in report.alarms if dict(p.tags)["rule"] == name]
        lines.append(f"  {name} ({severity}): " + (f"{_transitions(mine)}" if mine else "nothing"))
        lines.extend(f"    {_alarm_line(p)}" for p in mine)
    return "\n".join(lines) + "\n"


def _count(m: Message) -> str:
    parts = []
    if m.samples:
        parts.append(f"{len(m.samples)} sample{'s' if len(m.samples) > 1 else ''}")
    if m.events:
        parts.append(f"{len(m.events)} event{'s' if len(m.events) > 1 else ''}")
    if m.rejections:
        parts.append(f"{len(m.rejections)} rejected")
    parts += [f"{k} {v}" for k, v in sorted(m.counts.items())]
    return ", ".join(parts)


def _sample_line(s: SampleRow, fields: dict[str, float], note: str, report: Report) -> str:
    potline, cell, ts, volts, amps, extra, _ = s
    given = {"cell_voltage_v": volts, "line_current_ka": amps, **(extra or {})}
    shown = " ".join(f"{k}={_num(v)}" for k, v in given.items() if k not in report.derived)
    text = f"{potline}/{cell} {_time(ts)} {shown}"
    if note == "duplicate":
        return text + "  (duplicate: dropped, as cellmon run would)"
    readable = {*given, *report.settings.get(potline, {}), *fields}
    values = [
        f"{name}={_num(fields[name])}" if name in fields else f"{name}={_why(reads, readable)}"
        for name, reads in report.derived.items()
    ]
    if values:
        text += "  → " + " ".join(values)
    if note == "late":
        text += "  (late: written raw, not judged by alarms)"
    return text


def _why(reads: list[str], readable: set[str]) -> str:
    """Why a sample has no value for a derived field (the counters' two reasons)."""
    absent = [name for name in reads if name not in readable]
    if absent:
        return f"(no value: {', '.join(absent)} absent)"
    return "(no value: math error, e.g. a division by zero)"


def _transitions(points: list[Point]) -> str:
    states = [str(p.fields["state"]) for p in points]
    return ", ".join(f"{states.count(s)} {s}" for s in ("raised", "cleared") if s in states)


def _alarm_line(p: Point) -> str:
    tags = dict(p.tags)
    value = p.fields.get("value")
    shown = f" value {_num(float(value))}" if isinstance(value, float) else ""
    return f"{p.fields['state']} {tags['potline']}/{tags['cell']} {_time(p.time_ns)}{shown}"


def _time(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    ms = ns // 1_000_000 % 1000
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def _num(x: float) -> str:
    return f"{x:.6g}"
