"""The demo's live view: rates, the latest readings from the sink file, standing alarms.

Kept apart from the demo's wiring so that what is shown can be read, and tested, on its own.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from collector.journal import store as journal
from collector.runtime.metrics import Metrics
from processors.rules import alarms
from processors.rules.alarms import AlarmProcessor
from simulator.parameters import NS_PER_S

RATE_WINDOW_S = 2.0
TAIL_BYTES = 64 * 1024
LATEST_CELLS = 8
ANODE_EFFECT_V = 8.0  # the contract's default threshold: shown in red


class Rates:
    """Messages and samples per second over the last couple of seconds."""

    def __init__(self) -> None:
        self._history: deque[tuple[float, int, int]] = deque()
        self.messages_per_s = 0.0
        self.samples_per_s = 0.0

    def add(self, metrics: Metrics) -> None:
        """Take a snapshot of the counters; rates are over the last ``RATE_WINDOW_S``."""
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
            reading = parse_cell_line(line)
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


def parse_cell_line(line: str) -> CellReading | None:
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


def reasons_table(reasons: Mapping[str, int]) -> Table:
    """The rejections so far, the commonest reason first."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="red")
    table.add_column(justify="right")
    table.add_row("[bold]rejected by reason[/bold]", "")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        table.add_row(reason, f"{count:,}")
    return table


def raised_alarms(state_dir: Path) -> dict[str, list[str]]:
    """Cell → the rules of its alarms standing now, from the alarm processor's checkpoint."""
    try:
        conn = journal.connect_journal(state_dir)
        try:
            state = journal.read_state(conn, AlarmProcessor.name)
        finally:
            conn.close()
    except sqlite3.Error:  # being created: nothing raised yet
        return {}
    return {cell: rules for (_, cell), rules in alarms.standing(state).items()}


def cells_table(readings: list[CellReading], raised: Mapping[str, list[str]]) -> Table:
    """The latest reading of each shown cell, an anode effect in red, its standing alarms."""
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


def duration(seconds: float) -> str:
    """A span of seconds as the view shows it (``1 h 02 min``)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def log_to(console: Console) -> Iterator[None]:
    """Log lines above the live view: written straight to stderr they would tear it."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [RichHandler(console=console, show_path=False)]
    try:
        yield
    finally:
        root.handlers = saved
