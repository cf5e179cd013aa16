"""The demo's live view: the plant's targets first, then the pipeline at work.

The targets (kWh/t against the baseline and the 100 kWh/t goal with its voltage and
current-efficiency parts, anode changes on the 31-day cycle and the 590-block share, anode
effects and their CO2e) are those of the current shift and day, read from the processors'
checkpointed state: exactly what their points say, without reading the points back.

Kept apart from the demo's wiring so that what is shown can be read, and tested, on its own.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from collector.journal import store as journal
from collector.runtime.metrics import Metrics
from processors.base import Snapshotting
from processors.model import FieldValue, Point
from processors.rules import alarms
from processors.rules.alarms import AlarmProcessor
from simulator.parameters import NS_PER_S

RATE_WINDOW_S = 2.0
TAIL_BYTES = 64 * 1024
LATEST_CELLS = 5
TOP_EXCESS = 3
ANODE_EFFECT_V = 8.0  # the contract's default threshold: shown in red
TARGET_COLUMNS = (
    "",
    "kWh/t",
    "saved",  # of the savings goal, kWh/t
    "by voltage",
    "by CE",
    "AE mV",
    "on 31 d",  # anode changes on the target cycle
    "590",  # share of changes with the target block
    "AE",
    "CO2e t",
)


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


@dataclass(frozen=True)
class Settled:
    """The settling of an anode change, as its ``anode_change`` point says (contract 6.3)."""

    cell: str
    time_ns: int
    settle_min: float
    peak_excess_mv: float
    settled: bool
    crew: str


class SinkTail:
    """The latest ``cell`` points of the sink file: what the pipeline really wrote.

    Only the file's last bytes are read, so a refresh costs the same however long the run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_settled: Settled | None = None

    def settled(self) -> Settled | None:
        """The newest anode change whose settling was written, seen in this or an earlier tail."""
        for line in self._tail_lines():
            found = parse_settled_line(line)
            if found and (self.last_settled is None or found.time_ns >= self.last_settled.time_ns):
                self.last_settled = found
        return self.last_settled

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


def parse_settled_line(line: str) -> Settled | None:
    """An ``anode_change`` line that carries its settling; None for any other line."""
    if not line.startswith("anode_change,") or "settle_min=" not in line:
        return None
    head, _, rest = line.partition(" ")
    fields_text, _, stamp = rest.rpartition(" ")
    tags = dict(tag.split("=", 1) for tag in head.split(",")[1:] if "=" in tag)
    values = dict(f.split("=", 1) for f in fields_text.split(",") if "=" in f)
    try:
        return Settled(
            tags["cell"],
            int(stamp),
            float(values["settle_min"]),
            float(values.get("peak_excess_mv", "0")),
            values.get("settled") == "true",
            values.get("crew", '""').strip('"'),
        )
    except (KeyError, ValueError):
        return None


def settle_line(change: Settled | None) -> str:
    """One line on the last anode change that was judged: how long the cell took to settle."""
    if change is None:
        return "last anode change: none settled yet"
    stamp = time.strftime("%H:%M", time.gmtime(change.time_ns / NS_PER_S))
    crew = f" by crew {change.crew}" if change.crew else ""
    how = (
        f"settled in {change.settle_min:.0f} min"
        if change.settled
        else f"[red]not settled after {change.settle_min:.0f} min[/red]"
    )
    return (
        f"last anode change: {change.cell} at {stamp} UTC{crew}, {how}, "
        f"peak {change.peak_excess_mv:+.0f} mV"
    )


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


def open_periods(state_dir: Path, processors: Sequence[Snapshotting]) -> list[Point]:
    """The potline points of every open period, from the processors' checkpoints."""
    try:
        conn = journal.connect_journal(state_dir)
        try:
            states = {p.name: journal.read_state(conn, p.name) for p in processors}
        finally:
            conn.close()
    except sqlite3.Error:  # being created: nothing yet
        return []
    return [point for p in processors for point in p.snapshot(states[p.name])]


def targets_table(points: list[Point], potline: str, alarms_standing: int) -> Table:
    """The current shift and day of a potline against the plant's targets."""
    table = Table(
        title=f"potline {potline}: the plant's targets",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
    )
    for name in (
        "",
        "kWh/t",
        "saved",
        "by voltage",
        "by CE",
        "AE mV",
        "on 31 d",
        "590",
        "AE",
        "CO2e t",
    ):
        table.add_column(name, justify="left" if not name else "right")
    for kind in ("shift", "day"):
        row = _current(points, potline, kind)
        table.add_row(kind, *_target_cells(row))
    table.caption = f"alarms standing: {alarms_standing}"
    return table


def _current(points: list[Point], potline: str, kind: str) -> dict[str, dict[str, FieldValue]]:
    """Per measurement, the fields of the newest open period of this kind."""
    newest: dict[str, Point] = {}
    for p in points:
        tags = dict(p.tags)
        if tags.get("potline") != potline or tags.get("period") != kind:
            continue
        if p.measurement not in newest or p.time_ns > newest[p.measurement].time_ns:
            newest[p.measurement] = p
    return {m: p.fields for m, p in newest.items()}


def _target_cells(row: dict[str, dict[str, FieldValue]]) -> list[str]:
    sec, anodes, effects = (row.get(m, {}) for m in ("sec_potline", "anode_potline", "ae_potline"))
    saved = sec.get("savings_kwh_per_t")
    goal = sec.get("goal_kwh_per_t")
    cells = [_fmt(sec.get("sec_kwh_per_t"), ".0f")]
    if isinstance(saved, float) and isinstance(goal, float):
        style = "green" if saved >= goal else "yellow" if saved > 0 else "red"
        cells.append(f"[{style}]{saved:+.0f} of {goal:.0f}[/{style}]")
    else:
        cells.append("–")
    cells += [
        _fmt(sec.get("savings_voltage_kwh_per_t"), "+.0f"),
        _fmt(sec.get("savings_ce_kwh_per_t"), "+.0f"),
        _fmt(sec.get("ae_voltage_mv"), ".1f"),
        _fmt(anodes.get("on_target_pct"), ".0f", "%"),
        _fmt(anodes.get("target_block_share_pct"), ".0f", "%"),
        _fmt(effects.get("count"), "d"),
        _fmt(effects.get("co2e_t"), ".3f"),
    ]
    return cells


def savings_table(
    points: list[Point], potline: str, change: Settled | None, top: int = TOP_EXCESS
) -> Table:
    """Today's cells furthest above the potline's median voltage, and the last change.

    The cells by what their excess costs; the last judged anode change by how it settled.
    """
    day = [
        p
        for p in points
        if p.measurement == "cell_opportunity"
        and dict(p.tags).get("potline") == potline
        and dict(p.tags).get("period") == "day"
    ]
    newest = max((p.time_ns for p in day), default=0)
    ranked = sorted((p for p in day if p.time_ns == newest), key=lambda p: p.fields["rank"])
    table = Table(
        title="where the savings are: today's cells above the median",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
    )
    for name in ("cell", "excess mV", "energy kWh", "kWh/t of its metal"):
        table.add_column(name, justify="left" if name == "cell" else "right")
    for p in ranked[:top]:
        f = p.fields
        table.add_row(
            dict(p.tags)["cell"],
            _fmt(f.get("voltage_excess_mv"), "+.0f"),
            _fmt(f.get("energy_excess_kwh"), ",.0f"),
            _fmt(f.get("sec_excess_kwh_per_t"), "+.0f"),
        )
    table.caption = settle_line(change)
    table.caption_justify = "left"
    return table


def _fmt(value: FieldValue | None, spec: str, suffix: str = "") -> str:
    if value is None or isinstance(value, bool | str):
        return "–"
    return f"{value:{spec}}{suffix}"


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
