"""``cellmon demo`` end to end, as a process: broker, simulator, pipeline and file sink."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from collector import build
from collector.commands.demo_view import (
    SinkTail,
    open_periods,
    raised_alarms,
    savings_table,
    targets_table,
)
from collector.config.loader import load_config
from collector.journal import store as journal
from collector.source.deadletter import read_dead_letters
from processors.base import Snapshotting
from processors.model import Point

REPO = Path(__file__).resolve().parents[3]
CELLS = {f"C{i:03d}" for i in range(1, 7)}
CELL_LINE = re.compile(r"cell,cell=(C\d{3}),potline=P1 \S*\bvoltage_v=([-\d.e]+)[, ]")
# What the simulator's malformed kinds become at the collector.
REASONS = {"not_json", "missing_key", "out_of_bounds", "non_finite"}


def number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the summary:\n{text}"
    return int(found.group(1))


def demo(state: Path, *options: str) -> str:
    """``cellmon demo --no-live`` as a process; its summary, after the progress lines."""
    argv = ["demo", *options, "--no-live", "--state-dir", str(state)]
    done = subprocess.run(
        [sys.executable, "-m", "collector.commands.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout[done.stdout.index("cellmon demo:") :]


def test_demo_runs_the_whole_pipeline_and_accounts_for_every_message(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    summary = demo(state, "--duration-s", "8", "--cells", "6", "--speed", "120")

    lines = [line for line in (state / "points.lp").read_text().splitlines() if line]
    readings = [m.groups() for m in map(CELL_LINE.match, lines) if m]
    assert len(readings) == sum(line.startswith("cell,") for line in lines)
    assert {cell for cell, _ in readings} == CELLS
    assert all(3 <= float(volts) <= 60 for _, volts in readings)
    dead = read_dead_letters(state / "deadletter.jsonl")
    assert dead
    assert {d["reason"] for d in dead} <= REASONS

    published_samples = number(r"published (\d+) samples", summary)
    published_events = number(r"samples, (\d+) events", summary)
    accepted = number(r"accepted (\d+)", summary)
    rejected = number(r"rejected (\d+)", summary)
    written = number(r"(\d+) points written", summary)
    # Every well-formed sample is accepted once and written once as a raw `cell` point;
    # events are accepted too but become other points.
    assert len(readings) == published_samples == accepted - published_events
    assert rejected == len(dead)
    assert written == len(lines)
    assert str(state / "points.lp") in summary
    assert str(state / "deadletter.jsonl") in summary

    # the first screen leads with the plant's targets: this shift's and today's kWh/t
    # against the 100 kWh/t goal, split into its voltage and current-efficiency parts
    cfg = load_config(REPO / "config" / "demo.yaml")
    kpis = [p for p in build.processors(cfg) if isinstance(p, Snapshotting)]
    points = open_periods(state, kpis)
    screen = Console(record=True, width=120)
    screen.print(targets_table(points, "P1", 0))
    text = screen.export_text()
    shift_row = next(line for line in text.splitlines() if line.strip().startswith("shift"))
    kwh_per_t, saved, of, goal, by_voltage, by_ce = shift_row.split()[1:7]
    assert 12_000 < float(kwh_per_t) < 15_000
    assert (of, goal) == ("of", "100")
    assert float(by_voltage) + float(by_ce) == pytest.approx(float(saved), abs=1.5)  # rounded
    sec = next(
        p for p in points if p.measurement == "sec_potline" and ("period", "shift") in p.tags
    )
    assert float(kwh_per_t) == pytest.approx(sec.fields["sec_kwh_per_t"], abs=0.5)


def test_raised_alarms_are_read_from_the_alarm_processors_checkpoint(tmp_path: Path) -> None:
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    alarms = {
        "high_voltage": {"P1/C1": [1, True], "P1/C2": [5, False]},  # C2 only holding
        "anode_effect": {"P1/C1": [3, True]},
        "no_data": {"P1/C3": [None, True]},
    }
    store.commit(0, {"alarms": {"last": {}, "alarms": alarms}}, [], 0, {})
    assert raised_alarms(tmp_path) == {"C1": ["anode_effect", "high_voltage"], "C3": ["no_data"]}
    assert raised_alarms(tmp_path / "new") == {}  # before the first batch


def test_the_demo_reads_the_potline_from_sparkplug_edge_nodes(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    summary = demo(state, "--sparkplug", "--duration-s", "6", "--cells", "30")
    published = number(r"published (\d+) samples", summary)
    lines = (state / "points.lp").read_text().splitlines()
    cells = {m.group(1) for m in map(CELL_LINE.match, lines) if m}
    assert cells == {f"C{i:03d}" for i in range(1, 31)}
    assert sum(line.startswith("cell,") for line in lines) == published
    # two edge nodes of 24 and 6 cells: their births, and their deaths at the end
    metrics = [line for line in lines if line.startswith("cellmon,")][-1]
    assert "sparkplug_births=32i" in metrics
    assert "sparkplug_deaths=2i" in metrics
    assert "sparkplug_seq_gaps=0i" in metrics
    offline = [line for line in lines if line.startswith("cell_event,") and "type=offline" in line]
    assert len(offline) == 30


def opportunity(cell: str, rank: int, excess_mv: float, kwh: float, day_ns: int) -> Point:
    tags = (("potline", "P1"), ("cell", cell), ("period", "day"))
    fields = {
        "rank": rank,
        "voltage_excess_mv": excess_mv,
        "energy_excess_kwh": kwh,
        "sec_excess_kwh_per_t": excess_mv * 3.2,
    }
    return Point("cell_opportunity", tags, fields, day_ns)


def test_the_view_shows_todays_top_three_cells_and_the_last_settled_change(
    tmp_path: Path,
) -> None:
    yesterday, today = 0, 86_400 * 1_000_000_000
    points = [
        opportunity("C009", 1, 80.0, 900.0, yesterday),  # yesterday's: not shown
        *(opportunity(f"C00{k}", k, 60.0 - 10 * k, 500.0 - 100 * k, today) for k in range(1, 6)),
    ]
    sink = tmp_path / "points.lp"
    sink.write_text(
        "anode_change,potline=P1,cell=C004,anode=7,block=590 settle_min=95,peak_excess_mv=121.4,"
        'settled=true,crew="D" 1700000000000000000\n'
        "cell,potline=P1,cell=C001 voltage_v=4.2,current_ka=300.1 1700000060000000000\n"
    )
    tail = SinkTail(sink)
    screen = Console(record=True, width=100)
    screen.print(savings_table(points, "P1", tail.settled()))
    text = screen.export_text()
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("C00")]
    assert [r[0] for r in rows] == ["C001", "C002", "C003"]
    assert rows[0][1:3] == ["+50", "400"]
    # 2023-11-14T22:13:20Z; crew D's change took 95 min to settle, peaking 121 mV above
    caption = " ".join(text.split())  # the caption wraps at the table's width
    assert "C004 at 22:13 UTC by crew D, settled in 95 min, peak +121 mV" in caption
    sink.write_text("cell,potline=P1,cell=C001 voltage_v=4.2,current_ka=300.1 1\n")
    assert tail.settled() is not None  # what was seen stays shown when the tail moves on
