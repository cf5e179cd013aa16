"""Replay throughput of the processors alone: samples per second through the pure stage.

Ordering (late detection) and the KPI processors (kWh/t, anode effects, anode cycles and
the settling after a change) run over in-memory batches of simulated telemetry, as the
engine hands them over, without the journal and sink.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from collector import build
from collector.config.inputs import InputRule
from collector.config.models import Config
from collector.config.rules import Rules
from processors.kpi.ae import AnodeEffectProcessor
from processors.kpi.anode_cycle import AnodeCycleProcessor
from processors.kpi.anode_settle import AnodeSettleProcessor
from processors.kpi.sec import SecProcessor
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
    cfg = Config(
        source=Path("cellmon.yaml"),
        plant={"potlines": [{"id": "P1", "baseline_sec_kwh_per_t": 13450}], "kpi_update_s": 3600},
        rules=Rules(
            inputs=[InputRule(name="t", topic="smelter/{potline}/{cell}/t", kind="telemetry")]
        ),
    )
    sec = SecProcessor(build.sec_settings(cfg))
    ae = AnodeEffectProcessor(build.ae_settings(cfg))
    anodes = AnodeCycleProcessor(build.anode_settings(cfg))
    settle = AnodeSettleProcessor(build.settle_settings(cfg))
    states: dict[str, object] = {}
    names = [f"P1/{c}" for _, c in work[0][1].cells]
    newest: dict[str, int] = {}
    points = 0
    started = time.perf_counter()
    for codes, sb in work:
        late, newest = late_mask(codes, sb.ts_ns, names.__getitem__, newest)
        assert not late.any()
        batch = Batch(sb, [])
        for proc in (sec, ae, anodes, settle):
            states[proc.name], out = proc.apply(batch, states.get(proc.name))
            points += len(out)
    seconds = time.perf_counter() - started
    samples = args.cells * args.steps
    print(
        f"{samples:,} samples ({args.cells} cells × {args.steps} s) in {seconds:.2f} s: "
        f"{samples / seconds:,.0f} samples/s through ordering, kWh/t, anode effects, anode "
        f"cycles and settling; {points} points"
    )


if __name__ == "__main__":
    main()
