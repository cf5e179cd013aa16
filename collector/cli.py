"""The ``cellmon`` command line (contract section 3)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from collector.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "config/cellmon.yaml"

log = logging.getLogger("cellmon")

# The MQTT thread releases the GIL on every socket read; with CPython's default of 5 ms it
# would wait that long behind the processor thread each time. 0.2 ms keeps it responsive.
SWITCH_INTERVAL_S = 0.0002


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    """Run the pipeline until SIGINT/SIGTERM, then flush everything and exit 0."""
    from collector.service import Service

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    service = Service(_load(args.config), log_level=args.log_level.upper())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    log.info("running; state in %s", service.cfg.state_path)
    while not stop.wait(1.0):
        if not service.worker_alive():
            log.error("the worker process died; stopping (restart the service)")
            service.stop()
            return 1
    return service.stop()


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the configuration and rules; each error as ``file:line: key: message``."""
    cfg = _load(args.config)
    inputs = ", ".join(r.topic for r in cfg.rules.inputs)
    potlines = ", ".join(p.id for p in cfg.plant.potlines)
    print(f"{args.config}: OK (potlines: {potlines}; inputs: {inputs})")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish a simulated potline."""
    from simulator import cli as sim_cli

    return sim_cli.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline with an embedded broker and a live terminal view."""
    from collector import demo

    return demo.run(args)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
    )


def build_parser() -> argparse.ArgumentParser:
    """All subcommands; each registers its own options."""
    parser = argparse.ArgumentParser(prog="cellmon", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: list[tuple[str, Callable[[argparse.Namespace], int], Callable[..., None] | None]] = [
        ("run", cmd_run, _add_config),
        ("check", cmd_check, _add_config),
        ("simulate", cmd_simulate, _simulate_args),
        ("demo", cmd_demo, _demo_args),
    ]
    for name, func, add_args in commands:
        p = sub.add_parser(name, help=(func.__doc__ or "").splitlines()[0])
        if add_args:
            add_args(p)
        p.set_defaults(func=func)
    return parser


def _simulate_args(p: argparse.ArgumentParser) -> None:
    from simulator import cli as sim_cli

    sim_cli.add_arguments(p)


def _demo_args(p: argparse.ArgumentParser) -> None:
    from collector import demo

    demo.add_arguments(p)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cellmon`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
