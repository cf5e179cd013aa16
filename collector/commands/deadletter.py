"""``cellmon deadletter list`` and ``cellmon deadletter replay`` (contract 6.6).

The dead-letter store holds what the input rules refused. Once a mapping is fixed, the
letters it refused are data the KPIs lack: ``list`` shows what is there, ``replay`` takes it
through the rules now in force (``collector.commands.deadletter_replay``). Both read the
store of every state directory the deployment writes (one per shard).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from collector.commands.cli import load_or_exit
from collector.commands.letters import letters, parse_since, select, stores

PREVIEW_CHARS = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``list`` and ``replay``, with the same filters."""
    sub = parser.add_subparsers(dest="action", required=True)
    shown = sub.add_parser("list", help="print the dead letters and a count by reason")
    again = sub.add_parser("replay", help="take the dead letters through the rules now in force")
    for p in (shown, again):
        p.add_argument("--config", default="config/cellmon.yaml", help="the deployment's config")
        p.add_argument(
            "--reason", action="append", metavar="R", help="only this reason (repeatable)"
        )
        p.add_argument(
            "--since",
            metavar="T",
            help="only letters rejected since T: an ISO time, or a duration ago (30m, 2h, 7d)",
        )
        p.add_argument(
            "--shards", type=int, metavar="N", help="the deployment runs with `run --shards N`"
        )
    again.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Exit 0; 1 when a replay's data did not reach the database; 2 on a usage error."""
    cfg = load_or_exit(args.config)
    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as err:
        print(f"cellmon deadletter: --since: {err}", file=sys.stderr)
        return 2
    if args.action == "list":
        return show(stores(cfg, args.shards), args.reason, since)
    from collector.commands.deadletter_replay import replay_letters

    return replay_letters(cfg, args, since)


def preview(payload: object, width: int = PREVIEW_CHARS) -> str:
    """The payload on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(str(payload).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def show(paths: Sequence[Path], reasons: Sequence[str] | None, since: datetime | None) -> int:
    """Each letter as ``time  topic  reason  payload``, then how many of each reason."""
    by_reason: Counter[str] = Counter()
    for path in paths:
        content = path.read_bytes() if path.exists() else b""
        for letter in select(letters(content), reasons, since):
            e = letter.entry
            print(
                f"{e.get('time')}  {e.get('topic')}  {e.get('reason')}  {preview(e.get('payload'))}"
            )
            by_reason[str(e.get("reason"))] += 1
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items()))
    total = sum(by_reason.values())
    print(f"{total} dead letter{'' if total == 1 else 's'}{f': {counts}' if counts else ''}")
    return 0
