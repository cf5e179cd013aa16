"""The ``cellmon`` command line (contract section 3)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from collector.config.loader import load_config
from collector.config.models import Config
from collector.config.yamlsource import ConfigError, ConfigIssue
from collector.journal.locks import Busy

DEFAULT_CONFIG = "config/cellmon.yaml"
MAX_ISSUES_SHOWN = 100

log = logging.getLogger("cellmon")


def load_or_exit(path: str | Path) -> Config:
    """The config, or its issues on stderr as ``file:line: key: message`` and exit 2.

    Shared by every command, so they all refuse a bad config the same way.
    """
    try:
        return load_config(path)
    except ConfigError as err:
        print_issues(err.issues)
        raise SystemExit(2) from None


def print_issues(issues: Sequence[ConfigIssue]) -> None:
    """The first ``MAX_ISSUES_SHOWN`` issues on stderr, then how many more there are.

    Past a hundred problems the file is not a config with mistakes but the wrong file, and
    half a million lines would only bury the first, which says so.
    """
    for issue in issues[:MAX_ISSUES_SHOWN]:
        print(issue, file=sys.stderr)
    if len(issues) > MAX_ISSUES_SHOWN:
        print(f"... and {len(issues) - MAX_ISSUES_SHOWN} more problems", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the pipeline until SIGINT/SIGTERM, then flush everything and exit 0.

    SIGHUP, or a change of a rules file or of the config file, reloads the rules and the
    config's plant and targets (see ``collector.runtime.reload``).
    With ``shards:`` in the config (or ``--shards N``), one process per shard, each over its
    own potlines. Exit codes: 0 everything written; 1 a worker or a shard died; 2 a bad
    config, a state directory in use or a damaged journal file; 3 (``EXIT_BUFFERED``) the
    database refused writes for ``sink.shutdown_s`` after the stop, and the points it did
    not take are written at the next start.
    """
    cfg = load_or_exit(args.config)
    if args.shards:
        cfg = cfg.split(args.shards)
    level = args.log_level.upper()
    try:
        if cfg.shards:
            from collector.runtime.shards import run_sharded

            return run_sharded(cfg, level)
        from collector.runtime.service import run_service

        return run_service(cfg, level)
    except Busy as err:
        print(f"cellmon: another cellmon runs on this state directory ({err})", file=sys.stderr)
        return 2


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the configuration and rules; each error as ``file:line: key: message``.

    With ``--sample FILE``, also run the rules on the messages of FILE and print what each
    produced; exit 1 when one of them was rejected, so a CI job can hold a sample to it.
    """
    cfg = load_or_exit(args.config)
    r = cfg.rules
    inputs = ", ".join(
        [rule.topic for rule in r.inputs]
        + [f"spBv1.0/{rule.group or '+'}/# (Sparkplug B)" for rule in r.sparkplug]
    )
    potlines = ", ".join(p.id for p in cfg.plant.potlines)
    print(
        f"{args.config}: OK (potlines: {potlines}; inputs: {inputs}; "
        f"{len(r.derived)} derived fields; {len(r.alarms)} alarms)"
    )
    if args.sample is None:
        return 0
    from collector.commands.check_sample import format_report, run_sample

    try:
        report = run_sample(cfg, Path(args.sample))
    except ConfigError as err:
        print_issues(err.issues)
        return 2
    print(format_report(report), end="")
    return 1 if any(m.rejections for m in report.messages) else 0


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
    )


# Commands that live in their own module, each with add_arguments(parser) and run(args);
# only the module of the command being run is imported (the demo pulls in a broker).
MODULE_COMMANDS = {
    "simulate": ("simulator.cli", "Publish a simulated potline's telemetry and events."),
    "demo": (
        "collector.commands.demo",
        "The whole pipeline with an embedded broker and a live view.",
    ),
    "replay": (
        "collector.commands.replay",
        "Backfill samples and events from a file (CSV or Parquet); rewrite the KPIs they touch.",
    ),
    "recalc": (
        "collector.commands.recalc",
        "Rewrite the KPI periods of some days from the raw data in the database.",
    ),
    "deadletter": (
        "collector.commands.deadletter",
        "List the dead letters, or replay them through the rules now in force.",
    ),
    "report": ("collector.commands.report", "Write an HTML summary of a period from InfluxDB."),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """All subcommands; the one named in ``argv`` registers its own options."""
    parser = argparse.ArgumentParser(prog="cellmon", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("run", cmd_run), ("check", cmd_check)):
        p = sub.add_parser(name, help=(func.__doc__ or "").splitlines()[0])
        _add_config(p)
        p.set_defaults(func=func)
        if name == "check":
            p.add_argument(
                "--sample",
                metavar="FILE",
                help="run the rules on the messages of FILE (JSON Lines of topic, payload)",
            )
        else:
            p.add_argument(
                "--shards",
                type=int,
                metavar="N",
                help="deal the potlines into N shards, a process each (overrides shards:)",
            )
    for name, (module_name, summary) in MODULE_COMMANDS.items():
        p = sub.add_parser(name, help=summary)
        if name in argv:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cellmon`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
