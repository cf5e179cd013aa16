"""``cellmon recalc --from DAY --to DAY``: KPI periods rewritten from the database's raw data.

For a corrected current efficiency or baseline, or data that reached the database late
(contract 5.2). The request goes to whoever owns each potline's state directory: the
running instance's worker, which rewrites the periods between two batches and continues
its open ones from the new totals, or, with no instance running, this command itself.
``cellmon replay`` ends the same way, with the periods its file touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

from tqdm import tqdm

from collector import build
from collector.commands.cli import load_or_exit
from collector.config.models import Config
from collector.engine.targets import Target, days
from collector.journal import locks
from collector.journal import store as journal
from collector.journal.requests import Requests, Status
from collector.runtime.recalc import carry_out
from collector.runtime.service import SERVICE_LOCK
from collector.runtime.worker import FINISH_MARGIN_S, WORKER_LOCK
from processors.kpi.periods import KINDS

FOLLOW_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellmon recalc``."""
    parser.add_argument("--config", default="config/cellmon.yaml", help="config file")
    parser.add_argument(
        "--from", dest="first", type=date.fromisoformat, required=True, help="first local day"
    )
    parser.add_argument(
        "--to", dest="last", type=date.fromisoformat, required=True, help="last local day"
    )
    parser.add_argument(
        "--potline", action="append", help="only this potline (repeatable; default: all)"
    )
    add_common(parser)


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options ``replay`` shares: the deployment's shards, and quiet."""
    parser.add_argument(
        "--shards", type=int, metavar="N", help="the deployment runs with `run --shards N`"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Rewrite the days' periods; exit 0 once every one is rewritten."""
    cfg = load_or_exit(args.config)
    owned = [p.id for p in cfg.plant.potlines]
    unknown = sorted(set(args.potline or ()) - set(owned))
    if unknown:
        print(
            f"cellmon recalc: not potlines of {args.config}: {', '.join(unknown)}", file=sys.stderr
        )
        return 2
    if args.last < args.first:
        print("cellmon recalc: --to is before --from", file=sys.stderr)
        return 2
    targets = days(build.calendar(cfg), KINDS, args.potline or owned, args.first, args.last)
    return rewrite(deployment(cfg, args.shards), targets, quiet=args.quiet)


def deployment(cfg: Config, shards: int | None) -> Config:
    """The config as ``run`` deploys it, with ``--shards N`` as ``run`` reads it."""
    return cfg.split(shards) if shards else cfg


def rewrite(cfg: Config, targets: list[Target], *, quiet: bool) -> int:
    """Have each potline's periods rewritten by the owner of its state directory."""
    status = 0
    parts = [(cfg, targets)]
    if cfg.shards:
        parts = [
            (cfg.shard(s), [t for t in targets if t.potline in s.potlines]) for s in cfg.shards
        ]
    for part, mine in parts:
        if not mine:
            continue
        try:
            status = max(status, _rewrite(part, mine, quiet=quiet))
        except journal.JournalDamaged as err:
            print(f"cellmon: {err}", file=sys.stderr)
            status = 2
    return status


def _rewrite(cfg: Config, targets: list[Target], *, quiet: bool) -> int:
    requests = Requests(journal.connect_journal(cfg.state_path))
    request_id = requests.submit({"targets": [t.to_json() for t in targets]}, time.time_ns())
    disable = quiet or not sys.stderr.isatty()
    with tqdm(desc="recalculating", unit=" h", disable=disable, file=sys.stderr) as bar:
        status = _follow(cfg, requests, request_id, bar)
    outcome = status.outcome or {}
    if "error" in outcome:
        print(f"cellmon: recalculation failed: {outcome['error']}", file=sys.stderr)
        return 1
    for potline, kinds in outcome.get("periods", {}).items():
        counts = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items())
        print(f"rewrote {potline}: {counts}")
    print(f"{outcome.get('points', 0)} points written to {cfg.state_path}'s outbox")
    if outcome.get("removed"):
        print(f"{outcome['removed']} event points it no longer makes removed from the database")
    return 0


def _follow(cfg: Config, requests: Requests, request_id: int, bar: tqdm[None]) -> Status:
    """Wait for the outcome; carry the request out here whenever no instance runs."""
    while (status := requests.status(request_id)).outcome is None:
        bar.total = status.total or None
        bar.n = status.done
        bar.refresh()
        try:
            lock = locks.hold(cfg.state_path / SERVICE_LOCK)
        except locks.Busy:  # a running instance carries it out
            bar.set_description("recalculating in the running instance", refresh=False)
            time.sleep(FOLLOW_S)
            continue
        try:
            worker = locks.hold(cfg.state_path / WORKER_LOCK, wait_s=FINISH_MARGIN_S)
            try:
                if not carry_out(cfg, request_id):
                    why = (
                        f"the database did not take the points buffered in {cfg.state_path}; "
                        "nothing was rewritten: run the command again once it does"
                    )
                    requests.finish(request_id, {"error": why}, time.time_ns())
            finally:
                worker.close()
        finally:
            lock.close()
    return status
