"""``cellmon demo``: the whole pipeline on one machine with nothing to install.

An embedded broker, the simulator publishing into it faster than real time (with a small
share of malformed and repeated messages, so rejections and duplicates show), the real
``Service`` writing line protocol to a file, and a live view of what flows through.

The demo's state directory is its own: each run starts it afresh. A previous run's journal
would make this run's samples look late (their simulated times overlap), and its counters
and files would mix two runs in one summary. A marker file says the directory is the
demo's, so that no other directory is ever emptied.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from collector import build
from collector.commands.cli import print_issues
from collector.commands.demo_feed import Feed, SparkplugFeed
from collector.commands.demo_view import (
    Rates,
    SinkTail,
    cells_table,
    duration,
    log_to,
    open_periods,
    raised_alarms,
    reasons_table,
    savings_table,
    targets_table,
)
from collector.commands.embedded_broker import EmbeddedBroker
from collector.config.loader import load_config
from collector.config.models import Config
from collector.config.rules import Rules
from collector.config.sparkplug import SparkplugInput
from collector.config.yamlsource import ConfigError
from collector.runtime.metrics import Metrics
from collector.runtime.service import Service
from processors.base import Snapshotting
from simulator.parameters import NS_PER_S
from simulator.payloads import PotlineSim
from simulator.publisher import PublishOptions

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
SPARKPLUG_EXAMPLE = DEMO_CONFIG.parent / "examples" / "sparkplug.yaml"
REFRESH_PER_S = 4
PLAIN_EVERY_S = 1.0
BACKLOG_S = 8 * 3600.0  # without --duration-s: replay the last shift, then follow the clock
CATCH_UP_TIMEOUT_S = 30.0
SUBSCRIBE_TIMEOUT_S = 30.0
MARKER_FILE = ".cellmon-demo"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellmon demo``."""
    parser.add_argument("--cells", type=int, default=24, help="cells of potline P1 (default 24)")
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per second, >= 1 (default 60); without --duration-s the last "
        "8 hours are replayed at this speed, then the simulation follows the clock",
    )
    parser.add_argument(
        "--duration-s",
        type=float,
        help="stop after this many seconds (default: at Ctrl-C)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    parser.add_argument(
        "--bad-fraction",
        type=float,
        default=0.01,
        help="share of malformed telemetry messages (default 0.01)",
    )
    parser.add_argument(
        "--dup-fraction",
        type=float,
        default=0.01,
        help="share of telemetry messages sent twice (default 0.01)",
    )
    parser.add_argument(
        "--state-dir",
        default="var/demo",
        help="the demo's own directory, emptied of the previous run's files (default var/demo)",
    )
    parser.add_argument(
        "--sparkplug",
        action="store_true",
        help="the potline from Sparkplug B edge nodes (one per section of 24 cells, a device "
        "per cell), read by the input of config/examples/sparkplug.yaml",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="print a progress line every second instead of the live view "
        "(always so when the output is not a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    """Run until ``--duration-s`` or Ctrl-C; 1 if the simulator or worker failed, 2: bad input."""
    problem = _check_args(args)
    if problem:
        print(f"cellmon demo: {problem}", file=sys.stderr)
        return 2
    try:
        base = load_config(DEMO_CONFIG)
    except ConfigError as err:
        print_issues(err.issues)
        return 2
    state = Path(args.state_dir)
    problem = _start_afresh(state)
    if problem:
        print(f"cellmon demo: {problem}", file=sys.stderr)
        return 2
    stop = threading.Event()
    with EmbeddedBroker() as broker, _stop_on_signals(stop):
        cfg = base.model_copy(
            update={
                # amqtt speaks MQTT 3.1.1 only: the source's MQTT 5 client cannot log in
                "mqtt": base.mqtt.model_copy(update={"port": broker.port, "client": "paho"}),
                "state_dir": str(state),
                "rules": _sparkplug_rules(base) if args.sparkplug else base.rules,
            }
        )
        live = not args.no_live and sys.stdout.isatty()
        # The worker process logs straight to stderr, where INFO lines would tear the view.
        service = Service(cfg, log_level="WARNING" if live else args.log_level)
        demo = Demo(service, broker, _feed(args, broker.port, stop))
        demo.run(stop, args.duration_s, live=live)
    print(demo.summary())
    return 1 if demo.feed.error or demo.worker_exit else 0


def _check_args(args: argparse.Namespace) -> str | None:
    checks = {
        "--cells must be >= 1": args.cells >= 1,
        "--speed must be >= 1": args.speed >= 1,
        "--duration-s must be > 0": args.duration_s is None or args.duration_s > 0,
        "--bad-fraction and --dup-fraction must be in [0, 1]": (
            0 <= args.bad_fraction <= 1 and 0 <= args.dup_fraction <= 1
        ),
    }
    failed = [message for message, ok in checks.items() if not ok]
    return "; ".join(failed) or None


def _start_afresh(state: Path) -> str | None:
    """Empty the demo's directory of the previous run; None, or why it cannot be used."""
    if state.exists() and not state.is_dir():
        return f"--state-dir {state} is not a directory"
    if state.exists() and any(state.iterdir()):
        if not (state / MARKER_FILE).is_file():
            return f"--state-dir {state} is not empty and not the demo's: choose another"
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    (state / MARKER_FILE).write_text("cellmon demo state: emptied at each run of the demo\n")
    return None


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the demo cleanly instead of interrupting whatever runs."""
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sparkplug_rules(cfg: Config) -> Rules:
    """The shipped rules with the example's Sparkplug input of the simulated gateways."""
    example = yaml.safe_load(SPARKPLUG_EXAMPLE.read_text())["sparkplug"][0]
    gateways = SparkplugInput.model_validate(example)
    return cfg.rules.model_copy(update={"sparkplug": [gateways]})


def _feed(args: argparse.Namespace, port: int, stop: threading.Event) -> Feed:
    """The simulated potline, starting far enough back that no sample is ever in the future."""
    span_s = args.duration_s * args.speed if args.duration_s else BACKLOG_S
    sim = PotlineSim(
        "P1", args.cells, seed=args.seed, start_ns=time.time_ns() - int(span_s * NS_PER_S)
    )
    options = PublishOptions(
        port=port,
        bad_fraction=args.bad_fraction,
        dup_fraction=args.dup_fraction,
        client_id="cellmon-demo-simulator",
        seed=args.seed,
    )
    if args.sparkplug:
        return SparkplugFeed(sim, options, args.speed, stop)
    return Feed(sim, options, args.speed, stop)


class Demo:
    """The running demo: feed, service and what is shown of them.

    The service's metrics are a snapshot read from its journal, taken once per refresh.
    """

    def __init__(self, service: Service, broker: EmbeddedBroker, feed: Feed) -> None:
        self.service = service
        self.broker = broker
        self.feed = feed
        state = service.cfg.state_path
        self.sink_path = build.sink_file(service.cfg) or state
        self.dead_letter_path = state / build.DEAD_LETTER_FILE
        self.rates = Rates()
        self.caught_up = True
        self.worker_exit = 0
        self.began = time.monotonic()
        self.elapsed_s = 0.0
        self._kpis = [p for p in build.processors(service.cfg) if isinstance(p, Snapshotting)]

    def run(self, stop: threading.Event, duration_s: float | None, *, live: bool) -> None:
        """Show the pipeline until the time is up or ``stop`` is set, then stop it all."""
        self.service.start()
        self.began = time.monotonic()
        if self._wait_subscribed():
            self.feed.start()
        else:
            self.feed.fail(
                TimeoutError(f"cellmon did not subscribe within {SUBSCRIBE_TIMEOUT_S} s")
            )
        try:
            if live:
                self._watch_live(stop, duration_s)
            else:
                self._watch_plain(stop, duration_s)
        finally:
            stop.set()
            self.feed.done.wait()
            self.caught_up = self._wait_caught_up()
            self.worker_exit = self.service.stop()
            self.elapsed_s = time.monotonic() - self.began

    def _ticks(
        self, stop: threading.Event, duration_s: float | None, every_s: float
    ) -> Iterator[Metrics]:
        """A snapshot every ``every_s`` until the end; the feed failing is an end too."""
        end = self.began + duration_s if duration_s else float("inf")
        while not self.feed.done.is_set():
            if stop.wait(max(0.0, min(every_s, end - time.monotonic()))):
                return
            metrics = self.service.metrics
            self.rates.add(metrics)
            yield metrics
            if time.monotonic() >= end:
                return

    def _watch_plain(self, stop: threading.Event, duration_s: float | None) -> None:
        for metrics in self._ticks(stop, duration_s, PLAIN_EVERY_S):
            print(self._progress_line(metrics), flush=True)

    def _watch_live(self, stop: threading.Event, duration_s: float | None) -> None:
        console = Console()
        tail = SinkTail(self.sink_path)
        first = self._view(tail, Metrics())
        with Live(first, console=console, auto_refresh=False) as live, log_to(console):
            for metrics in self._ticks(stop, duration_s, 1 / REFRESH_PER_S):
                live.update(self._view(tail, metrics), refresh=True)

    def _wait_subscribed(self) -> bool:
        """Publish only once cellmon subscribed: until then messages would reach no one."""
        cfg = self.service.cfg
        wanted = set(build.decoder(cfg).subscriptions())
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        while not wanted <= self.broker.subscriptions(cfg.mqtt.client_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _wait_caught_up(self) -> bool:
        """Let the collector take every message the broker acknowledged to the simulator."""
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while self.service.metrics.messages < self.feed.counts.messages:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _progress_line(self, m: Metrics) -> str:
        return (
            f"{time.monotonic() - self.began:6.1f} s  "
            f"{self.rates.messages_per_s:6.0f} msg/s  {self.rates.samples_per_s:6.0f} samples/s  "
            f"accepted {m.accepted}  rejected {m.rejected}  duplicates {m.duplicates}  "
            f"late {m.late}  written {m.written}  buffered {m.buffered}  lag {m.lag_s:.1f} s"
        )

    def _view(self, tail: SinkTail, m: Metrics) -> Group:
        """Sized for an 80 × 24 terminal: counters beside the reasons, then the cells."""
        feed = self.feed
        header = Text(
            f"cellmon demo · potline P1 · {len(feed.sim.cell_ids)} cells · "
            f"{feed.speed:g}× real time · {duration(feed.simulated_s)} simulated",
            style="bold",
        )
        state = self.service.cfg.state_path
        raised = raised_alarms(state)
        standing = sum(len(rules) for rules in raised.values())
        kpis = open_periods(state, self._kpis)
        targets = targets_table(kpis, "P1", standing)
        pipeline = Table.grid(padding=(0, 4))
        pipeline.add_row(self._counters(m), reasons_table(m.rejected_by_reason))
        footer = Text(
            f"output {self.sink_path}\ndead letters {self.dead_letter_path}\nCtrl-C to stop",
            style="dim",
        )
        cells = cells_table(tail.latest(), raised)
        return Group(
            header, targets, savings_table(kpis, "P1", tail.settled()), pipeline, cells, footer
        )

    def _counters(self, m: Metrics) -> Table:
        rates = self.rates
        table = Table.grid(padding=(0, 1))
        for style in ("bold", "", "bold", ""):
            table.add_column(style=style, justify="left" if style else "right")
        table.add_row(
            "messages/s", f"{rates.messages_per_s:,.0f}", "samples/s", f"{rates.samples_per_s:,.0f}"
        )
        table.add_row("accepted", f"{m.accepted:,}", "written", f"{m.written:,}")
        table.add_row("rejected", f"[red]{m.rejected:,}[/red]", "buffered", f"{m.buffered:,}")
        table.add_row("duplicates", f"[yellow]{m.duplicates:,}[/yellow]", "lag", f"{m.lag_s:.1f} s")
        table.add_row("late", f"{m.late:,}", "messages", f"{m.messages:,}")
        return table

    def summary(self) -> str:
        """What happened, and where to look: for after everything has stopped."""
        m, counts = self.service.metrics, self.feed.counts
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(m.rejected_by_reason.items()))
        lines = [
            f"cellmon demo: {self.elapsed_s:.1f} s, {duration(self.feed.simulated_s)} of "
            f"potline P1 simulated ({len(self.feed.sim.cell_ids)} cells)",
            f"  simulator:  published {counts.summary()}",
            f"  collector:  received {m.messages} messages, {m.received} objects: "
            f"accepted {m.accepted}, rejected {m.rejected}"
            + (f" ({reasons})" if reasons else "")
            + f", duplicates {m.duplicates}, late {m.late}",
            f"  output:     {m.written} points written to {self.sink_path}",
            f"  rejected:   {m.rejected} dead letters in {self.dead_letter_path}",
        ]
        if self.feed.error:
            lines.append(f"  simulator failed: {self.feed.error}")
        if not self.caught_up:
            lines.append(
                f"  not all published messages were received within {CATCH_UP_TIMEOUT_S:.0f} s; "
                "the rest were left with the broker"
            )
        if self.worker_exit:
            lines.append(f"  the processing worker failed (exit code {self.worker_exit})")
        return "\n".join(lines)
