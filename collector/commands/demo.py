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
import itertools
import logging
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from collector import build
from collector.commands.cli import print_issues
from collector.commands.embedded_broker import EmbeddedBroker
from collector.config.loader import load_config
from collector.config.yamlsource import ConfigError
from collector.journal import store as journal
from collector.runtime.metrics import Metrics
from collector.runtime.service import Service
from simulator.parameters import NS_PER_S
from simulator.payloads import PotlineSim
from simulator.publisher import PublishCounts, PublishOptions, publish

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
REFRESH_PER_S = 4
PLAIN_EVERY_S = 1.0
RATE_WINDOW_S = 2.0
SLICE_WALL_S = 1.0
BACKLOG_S = 8 * 3600.0  # without --duration-s: replay the last shift, then follow the clock
CATCH_UP_TIMEOUT_S = 30.0
SUBSCRIBE_TIMEOUT_S = 30.0
TAIL_BYTES = 64 * 1024
LATEST_CELLS = 8
ANODE_EFFECT_V = 8.0
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
                "mqtt": base.mqtt.model_copy(update={"port": broker.port}),
                "state_dir": str(state),
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
    return Feed(sim, options, args.speed, stop)


@dataclass
class Feed:
    """Publishes the simulation in slices of about a second of wall time until stopped.

    Slices let the publisher stop within a second and switch to real time once the
    simulation has caught up with the clock (the pipeline rejects samples from the future).
    """

    sim: PotlineSim
    options: PublishOptions
    speed: float
    stop: threading.Event
    counts: PublishCounts = field(default_factory=PublishCounts)
    simulated_s: float = 0.0
    error: OSError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="demo-simulator", daemon=True).start()

    def fail(self, error: OSError) -> None:
        """End before starting: nothing is published."""
        log.error("simulator not started: %s", error)
        self.error = error
        self.done.set()

    def _run(self) -> None:
        try:
            self._publish_until_stopped()
        except OSError as exc:  # broker refused, stalled or went away
            log.error("simulator stopped: %s", exc)
            self.error = exc
        finally:
            self.done.set()

    def _publish_until_stopped(self) -> None:
        t = self.sim.start_ns
        for index in itertools.count():
            speed = self.speed if t + self._span_ns(self.speed) <= time.time_ns() else 1.0
            if speed == 1.0 and self.stop.wait(max(0, t - time.time_ns()) / NS_PER_S):
                return
            if self.stop.is_set():
                return
            end = t + self._span_ns(speed)
            # Each slice spoils other messages, reproducibly for a given --seed, and has its
            # own client id: amqtt clears the queue of a session whose id connects again.
            options = replace(
                self.options,
                speed=speed,
                seed=self.options.seed * 2**32 + index,
                client_id=f"{self.options.client_id}-{index}",
            )
            self._add(publish(self.sim, t, end, options))
            self.simulated_s = (end - self.sim.start_ns) / NS_PER_S
            t = end

    @staticmethod
    def _span_ns(speed: float) -> int:
        return round(SLICE_WALL_S * speed * NS_PER_S)

    def _add(self, part: PublishCounts) -> None:
        c = self.counts
        c.samples += part.samples
        c.events += part.events
        c.messages += part.messages
        c.duplicates += part.duplicates
        c.malformed.update(part.malformed)


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
        with Live(first, console=console, auto_refresh=False) as live, _log_to(console):
            for metrics in self._ticks(stop, duration_s, 1 / REFRESH_PER_S):
                live.update(self._view(tail, metrics), refresh=True)

    def _wait_subscribed(self) -> bool:
        """Publish only once cellmon subscribed: until then messages would reach no one."""
        cfg = self.service.cfg
        wanted = {t.subscription for t in build.templates(cfg)}
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
            f"{feed.speed:g}× real time · {_duration(feed.simulated_s)} simulated",
            style="bold",
        )
        top = Table.grid(padding=(0, 4))
        top.add_row(self._counters(m), _reasons_table(m.rejected_by_reason))
        footer = Text(
            f"output {self.sink_path}\ndead letters {self.dead_letter_path}\nCtrl-C to stop",
            style="dim",
        )
        raised = raised_alarms(self.service.cfg.state_path)
        return Group(header, top, _cells_table(tail.latest(), raised), footer)

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
            f"cellmon demo: {self.elapsed_s:.1f} s, {_duration(self.feed.simulated_s)} of "
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


class Rates:
    """Messages and samples per second over the last couple of seconds."""

    def __init__(self) -> None:
        self._history: deque[tuple[float, int, int]] = deque()
        self.messages_per_s = 0.0
        self.samples_per_s = 0.0

    def add(self, metrics: Metrics) -> None:
        now = time.monotonic()
        history = self._history
        history.append((now, metrics.messages, metrics.received))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
            history.popleft()
        t0, messages0, received0 = history[0]
        if now > t0:
            self.messages_per_s = (metrics.messages - messages0) / (now - t0)
            self.samples_per_s = (metrics.received - received0) / (now - t0)


@dataclass(frozen=True)
class CellReading:
    """One raw sample of a cell, as written to the sink."""

    cell: str
    voltage_v: float
    current_ka: float
    time_ns: int


class SinkTail:
    """The latest ``cell`` points of the sink file: what the pipeline really wrote.

    Only the file's last bytes are read, so a refresh costs the same however long the run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def latest(self, count: int = LATEST_CELLS) -> list[CellReading]:
        """The newest reading of ``count`` cells, in name order so that rows stay put.

        A cell in an anode effect comes first, so that it is seen whichever cell it is.
        """
        newest: dict[str, CellReading] = {}
        for line in self._tail_lines():
            reading = _parse_cell_line(line)
            if reading:
                newest[reading.cell] = reading
        ranked = sorted(newest.values(), key=lambda r: (r.voltage_v <= ANODE_EFFECT_V, r.cell))
        return ranked[:count]

    def _tail_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(0, size - TAIL_BYTES))
                data = f.read()
        except FileNotFoundError:
            return []
        lines = data.decode("utf-8", errors="replace").split("\n")
        return lines[1:] if len(data) == TAIL_BYTES else lines  # the first may be cut


def _parse_cell_line(line: str) -> CellReading | None:
    """A ``cell`` line's cell, voltage and current; None for any other line."""
    if not line.startswith("cell,"):
        return None
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    head, fields, stamp = parts
    tags = dict(tag.split("=", 1) for tag in head.split(",")[1:] if "=" in tag)
    values = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
    try:
        return CellReading(
            tags["cell"], float(values["voltage_v"]), float(values["current_ka"]), int(stamp)
        )
    except (KeyError, ValueError):
        return None


def _reasons_table(reasons: Mapping[str, int]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="red")
    table.add_column(justify="right")
    table.add_row("[bold]rejected by reason[/bold]", "")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        table.add_row(reason, f"{count:,}")
    return table


def raised_alarms(state_dir: Path) -> dict[str, list[str]]:
    """Cell → the rules of its alarms standing now, from the alarm processor's checkpoint.

    The checkpoint is committed with every batch, so this is exactly what the ``alarm``
    points say, without scanning the output for them.
    """
    try:
        conn = journal.connect_journal(state_dir)
        try:
            state = journal.read_state(conn, "alarms") or {}
        finally:
            conn.close()
    except sqlite3.Error:  # being created: nothing raised yet
        return {}
    raised: dict[str, list[str]] = {}
    for rule, entries in sorted(state.get("alarms", {}).items()):
        for key, (_, up) in entries.items():
            if up:
                raised.setdefault(key.split("/", 1)[1], []).append(rule)
    return raised


def _cells_table(readings: list[CellReading], raised: Mapping[str, list[str]]) -> Table:
    table = Table(
        title="latest samples written", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1)
    )
    for name in ("cell", "sample time (UTC)", "voltage V", "current kA", "alarms"):
        table.add_column(name, justify="right" if name.endswith(("V", "kA")) else "left")
    for r in readings:
        voltage = f"{r.voltage_v:.3f}"
        if r.voltage_v > ANODE_EFFECT_V:
            voltage = f"[bold red]anode effect {voltage}[/bold red]"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.time_ns / NS_PER_S))
        alarms = ", ".join(raised.get(r.cell, []))
        table.add_row(r.cell, stamp, voltage, f"{r.current_ka:.2f}", f"[red]{alarms}[/red]")
    return table


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def _log_to(console: Console) -> Iterator[None]:
    """Log lines above the live view: written straight to stderr they would tear it."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [RichHandler(console=console, show_path=False)]
    try:
        yield
    finally:
        root.handlers = saved
