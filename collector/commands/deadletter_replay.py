"""``cellmon deadletter replay``: the dead letters through the rules now in force.

A letter now accepted is a backfill (contract 5.2), and goes the way ``cellmon replay FILE``
takes: its samples and events through the replay's own journal and drain to the database,
then every period they touch rewritten by the owner of the live state, which rebases its
open periods. Not the live inbox: it has one writer, the MQTT process, and the live worker
would take a sample older than its cell's newest as late, stored but never in a KPI.

The store is rewritten last, once the database holds the raw points and the periods are
rewritten: a run that fails anywhere before leaves every letter where it was, and the next
run does it all again. Again is harmless: the database holds a sample once by (potline,
cell, ts), and a rewrite is from all the period's data. Letters appended by the running
service meanwhile are kept (``collector.source.deadletter.rewrite``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from collector import build
from collector.commands import letters as cmd
from collector.commands.recalc import deployment, rewrite
from collector.commands.replay import NS, Replay, journal_config
from collector.config.models import Config
from collector.engine.targets import Target, touched
from collector.journal import locks
from collector.runtime.service import SERVICE_LOCK
from collector.source import deadletter as store
from collector.source.decode import Decoded, Decoder, EventRow, SampleRow
from processors.kpi.periods import KINDS

NOT_REPLAYABLE = "not_utf8"  # the store holds its payload with the bad bytes replaced
SPARKPLUG_PREFIX = "spBv1.0/"  # binary, and read against its node's birth


@dataclass
class Plan:
    """What a store becomes: the lines replaced, and what the accepted letters gave."""

    path: Path
    before: bytes
    replaced: dict[int, list[bytes]] = field(default_factory=dict)
    samples: list[SampleRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    accepted: int = 0
    still: Counter[str] = field(default_factory=Counter)
    skipped: int = 0


def replay_letters(cfg: Config, args: argparse.Namespace, since: datetime | None) -> int:
    """Decode, store, have the periods rewritten, then rewrite the stores."""
    own = journal_config(cfg, Path(f"{cfg.state_dir}-replay"))
    try:
        lock = locks.hold(own.state_path / SERVICE_LOCK)
    except locks.Busy as err:
        print(f"cellmon deadletter: a replay runs on {own.state_path} ({err})", file=sys.stderr)
        return 2
    try:
        decoder, now = build.decoder(cfg), time.time_ns()
        limit = cfg.ingest.dead_letter_max_bytes
        plans = [
            plan(path, store.snapshot(path), decoder, args, since, now, limit)
            for path in cmd.stores(cfg, args.shards)
        ]
        status = _backfill(deployment(cfg, args.shards), own, plans, quiet=args.quiet)
        if status != 0:
            return status
        for p in plans:
            if p.replaced:
                store.rewrite(p.path, p.before, p.replaced)
    except store.StoreChanged as err:
        print(f"cellmon deadletter: {err}", file=sys.stderr)
        return 1
    finally:
        lock.close()
    _summary(plans)
    return 0


def plan(
    path: Path,
    before: bytes,
    decoder: Decoder,
    args: argparse.Namespace,
    since: datetime | None,
    now_ns: int,
    limit: int,
) -> Plan:
    """Judge each selected letter of one store again; nothing is written yet."""
    out = Plan(path, before)
    for letter in cmd.select(cmd.letters(before), args.reason, since):
        entry = letter.entry
        if not replayable(entry):
            out.skipped += 1
            continue
        got = Decoded()
        decoder.decode(str(entry["topic"]), str(entry["payload"]).encode(), now_ns, got)
        if got.foreign:  # a potline this deployment does not own: not ours to judge
            out.skipped += 1
            continue
        # a letter arrived long ago and is judged now: not live, so not timed (contract 6.5)
        out.samples += [(*row[:6], None) for row in got.samples]
        out.events += got.events
        lines = [
            store.entry_line(
                entry
                | {
                    "reason": r.reason,
                    "detail": r.detail,
                    "payload": r.payload[:limit].decode("utf-8", errors="replace"),
                    "truncated": len(r.payload) > limit,
                }
            )
            for r in got.rejections
        ]
        out.still.update(r.reason for r in got.rejections)
        out.accepted += not lines
        if lines != [store.entry_line(entry)]:  # unchanged: the store stays byte for byte
            out.replaced[letter.index] = lines
    return out


def replayable(entry: dict[str, object]) -> bool:
    """Whether the store holds the payload as it was received."""
    return (
        isinstance(entry.get("topic"), str)
        and isinstance(entry.get("payload"), str)
        and not entry.get("truncated")
        and entry.get("reason") != NOT_REPLAYABLE
        and not str(entry["topic"]).startswith(SPARKPLUG_PREFIX)
    )


def _backfill(cfg: Config, own: Config, plans: list[Plan], *, quiet: bool) -> int:
    """The accepted samples and events to the database, then their periods rewritten.

    ``cfg`` is the config as deployed (shards and all): each period goes to its owner.
    """
    samples = sorted((s for p in plans for s in p.samples), key=lambda s: s[2])
    events = sorted((e for p in plans for e in p.events), key=lambda e: e[2])
    if not samples and not events:
        return 0
    replay = Replay(own, plans[0].path, None, quiet=quiet)
    batch = Decoded(samples=samples, events=events)
    if replay.write([(len(samples) + len(events), batch)]) != 0:
        return 1
    targets: list[Target] = touched(
        build.calendar(cfg), KINDS, replay.rows(), int(cfg.plant.max_gap_s * NS)
    )
    return rewrite(cfg, targets, quiet=quiet) if targets else 0


def _summary(plans: list[Plan]) -> None:
    accepted = sum(p.accepted for p in plans)
    still: Counter[str] = sum((p.still for p in plans), Counter())
    skipped = sum(p.skipped for p in plans)
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(still.items()))
    print(
        f"dead letters: {accepted} now accepted and removed "
        f"({sum(len(p.samples) for p in plans)} samples, {sum(len(p.events) for p in plans)} "
        f"events), {sum(still.values())} still rejected{f' ({reasons})' if reasons else ''}, "
        f"{skipped} not replayable (cut, not UTF-8, Sparkplug or another instance's)"
    )
