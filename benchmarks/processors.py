"""Replay throughput of the processors alone: samples per second through the pure stage.

Ordering (late detection) and the KPI processors (kWh/t, anode effects, anode cycles) run
over in-memory batches of simulated telemetry, as the engine hands them over, without the
journal and sink.
"""

from __future__ import annotations

import argparse
import time
from datetime import time as clock_time

import numpy as np

from processors.kpi.ae import AESettings, AnodeEffectProcessor
from processors.kpi.anode_cycle import AnodeCycleProcessor, AnodeSettings, AnodeTargets
from processors.kpi.energy import Goal
from processors.kpi.periods import Calendar
from processors.kpi.sec import SecProcessor, SecSettings
from processors.model import Batch, SampleBatch
from processors.ordering import late_mask
from simulator.payloads import PotlineSim

NS = 1_000_000_000


def batches(cells: int, steps: int, batch_steps: int) -> list[tuple[np.ndarray, SampleBatch]]:
    """Step-major batches of all cells, as the engine receives them from the inbox."""
    start = (int(time.time()) // 86_400 - 30) * 86_400 * NS
    sim = PotlineSim("P1", cells=cells, seed=3, start_ns=start, interval_s=1.0)
    names = [("P1", c) for c in sim.columns(0, 1).cells]
    out = []
    for k0 in range(0, steps, batch_steps):
        cols = sim.columns(k0, min(batch_steps, steps - k0))
        n = len(cols) * cells
        codes = np.tile(np.arange(cells, dtype=np.int64), len(cols))
        sb = SampleBatch(
            names,
            codes,
            np.repeat(cols.ts_ns, cells),
            cols.cell_voltage_v.reshape(n),
            np.repeat(cols.line_current_ka, cells),
            [None] * n,
        )
        out.append((codes, sb))
    return out


def main() -> None:
    """Time the processors over the whole simulated run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=400)
    parser.add_argument("--steps", type=int, default=5000, help="seconds of telemetry")
    parser.add_argument("--batch-steps", type=int, default=500)
    args = parser.parse_args()
    work = batches(args.cells, args.steps, args.batch_steps)
    goal = Goal(0.925, 13450.0, 100.0, 0.38)
    settings = SecSettings(
        Calendar("Asia/Shanghai", (clock_time(0), clock_time(8), clock_time(16))),
        {"P1": goal},
        update_interval_s=3600,
    )
    sec = SecProcessor(settings)
    ae = AnodeEffectProcessor(AESettings(settings.calendar, {"P1": 8.0}, {"P1": 0.925}))
    anodes = AnodeCycleProcessor(AnodeSettings(settings.calendar, {"P1": AnodeTargets()}))
    states: dict[str, object] = {}
    names = [f"P1/{c}" for _, c in work[0][1].cells]
    newest: dict[str, int] = {}
    points = 0
    started = time.perf_counter()
    for codes, sb in work:
        late, newest = late_mask(codes, sb.ts_ns, names.__getitem__, newest)
        assert not late.any()
        batch = Batch(sb, [])
        for proc in (sec, ae, anodes):
            states[proc.name], out = proc.apply(batch, states.get(proc.name))
            points += len(out)
    seconds = time.perf_counter() - started
    samples = args.cells * args.steps
    print(
        f"{samples:,} samples ({args.cells} cells × {args.steps} s) in {seconds:.2f} s: "
        f"{samples / seconds:,.0f} samples/s through ordering, kWh/t, anode effects and "
        f"anode cycles; {points} points"
    )


if __name__ == "__main__":
    main()
