"""What the tap-cycle processor's checkpoint costs: 400 cells, a tap every 48 h per cell.

The history is by minute, so its size does not depend on the sample rate: 96 h of samples
every 30 s (taps staggered over the cells, so each cell is somewhere in its cycle) build the
state, then a 5-second batch at 1 Hz is what the engine checkpoints every 5 s. Printed: the
whole checkpoint (what a checkpoint without parts would write every time), the changed
parts a 5-s checkpoint writes, and the time of each, with the journal commit.

    .venv/bin/python -m benchmarks.tap_checkpoint
"""

from __future__ import annotations

import tempfile
import time
from datetime import time as clock
from pathlib import Path
from typing import Any

import orjson

from collector.journal import store as journal
from processors.kpi.periods import Calendar
from processors.kpi.taps import TapCycleProcessor, TapSettings
from processors.model import Batch
from processors.testing import at_rate, metal_tap, samples

NS = 1_000_000_000
CALENDAR = Calendar("Asia/Shanghai", (clock(0), clock(8), clock(16)))
H = 3600 * NS
T0 = 1_709_251_200 * NS
CELLS = [("P1", f"C{k:03d}") for k in range(400)]
CYCLE_H = 48
RUN_H = 96


def build() -> tuple[TapCycleProcessor, Any, int]:
    """The state after ``RUN_H`` hours, hourly batches; returns it and where it ends."""
    proc = TapCycleProcessor(
        TapSettings(max_cycle_h={"P1": 72.0}, max_gap_s=60.0, calendar=CALENDAR)
    )
    state: Any = None
    for t in range(T0, T0 + RUN_H * H, H):
        batch = Batch(samples(CELLS, at_rate(t, t + H, 30)), [])
        for k, cell in enumerate(CELLS):
            phase = T0 + (k * CYCLE_H * H) // len(CELLS)
            for tap in range(phase, T0 + RUN_H * H, CYCLE_H * H):
                if t <= tap < t + H:
                    batch.events.append(metal_tap(cell, tap, 6400.0))
        batch.events.sort(key=lambda e: e.ts_ns)
        state, _ = proc.apply(batch, state)
    return proc, state, T0 + RUN_H * H


def timed(action: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def main() -> None:
    proc, state, end = build()
    proc.changes(state)  # what the build wrote is stored: the next call is one interval's
    full, t_full = timed(lambda: orjson.dumps(proc.checkpoint(state)))
    parts = len(proc.checkpoint(state)["parts"])
    state, _ = proc.apply(Batch(samples(CELLS, at_rate(end, end + 5 * NS, 1.0)), []), state)
    proc.changes(state)  # a new chunk began at ``end``: the next interval is a usual one
    state, _ = proc.apply(
        Batch(samples(CELLS, at_rate(end + 5 * NS, end + 10 * NS, 1.0)), []), state
    )
    (main_state, changed, whole), t_changes = timed(lambda: proc.changes(state))
    body = orjson.dumps(changed)
    main_bytes = len(orjson.dumps(main_state))
    with tempfile.TemporaryDirectory() as tmp:
        store = journal.Store(journal.connect_inbox(Path(tmp)), journal.connect_journal(Path(tmp)))
        everything = {proc.name: (proc.checkpoint(state)["parts"], True)}
        _, t_whole = timed(
            lambda: store.commit(0, {proc.name: main_state}, [], 0, {}, parts=everything)
        )
        _, t_commit = timed(
            lambda: store.commit(
                0, {proc.name: main_state}, [], 0, {}, parts={proc.name: (changed, whole)}
            )
        )
    print(
        f"whole checkpoint: {len(full) / 1e6:.1f} MB, {parts} parts, {t_full * 1e3:.0f} ms to "
        f"serialise; all parts committed (the first checkpoint after a start): {t_whole:.2f} s"
    )
    print(
        f"5-s checkpoint: {main_bytes / 1e3:.0f} kB of main state, {len(body) / 1e3:.0f} kB "
        f"of {len(changed)} changed parts, "
        f"{t_changes * 1e3:.1f} ms to collect, {t_commit * 1e3:.1f} ms to commit"
    )


if __name__ == "__main__":
    main()
