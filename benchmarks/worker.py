"""The worker's CPU per message at a paced rate: ``Engine.step()`` over one second of cells.

The processor stage as ``cellmon run`` builds it (``collector.build``: the shipped rules
``config/rules/default.yaml``, every registered processor, a journal store in a temporary
directory) for ``--cells`` cells in potlines of 400. Each simulated second, the inbox gets
one sample of every cell as the MQTT source commits them (``Inbox.append``, with the
contract's extra fields ``bath_temp_c`` and ``noise_uohm``), and one ``Engine.step()``
consumes that batch: 2,000 rows for 2,000 cells, as at 2,000 messages/s when the engine
polls once a second. Only the steps are timed, with ``time.process_time()``: decoding,
the inbox append and the sink (the drain's gzip and HTTP write to InfluxDB) are not in it.
The garbage collector is set as in the worker process (``tune_gc``; ``--default-gc``
leaves Python's thresholds). The engine's clock is the simulated one, so checkpoints
(every 30 s, or 30,000 rows) and self-metrics (every 10 s) come as often per batch as in
the paced run; the output goes to the journal's outbox, as in production.

    python -m benchmarks.worker --cells 2000 --seconds 60
    python -m benchmarks.worker --cells 400 --batch-seconds 1

``--batch-seconds`` puts more seconds of all cells in one batch (a backlog drains in
batches of up to 5,000 rows). The first ``--warmup`` seconds (the cells' first samples,
which open their periods) are not timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from collector import build
from collector.config.loader import load_rules
from collector.config.models import Config
from collector.engine.engine import Engine
from collector.journal import store as journal
from collector.runtime.worker import tune_gc
from collector.source.decode import SampleRow
from simulator.payloads import PotlineSim

NS = 1_000_000_000
CELLS_PER_POTLINE = 400
ROOT = Path(__file__).resolve().parent.parent


def config(state: Path, potlines: int) -> Config:
    """The shipped rules and a plant of ``potlines`` potlines, state in ``state``."""
    return Config(
        source=ROOT / "config" / "cellmon.yaml",
        state_dir=str(state),
        plant={
            "potlines": [
                {"id": f"P{k + 1}", "baseline_sec_kwh_per_t": 13450} for k in range(potlines)
            ]
        },
        rules=load_rules(ROOT / "config" / "cellmon.yaml"),
    )


class Clock:
    """The engine's clock: the simulated second being processed, plus a little latency."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def engine(cfg: Config, clock: Clock) -> Engine:
    """The engine as ``build.engine`` makes it, on the simulated clock."""
    state = cfg.state_path
    store = journal.Store(journal.connect_inbox(state), journal.connect_journal(state))
    return Engine(
        store,
        build.processors(cfg),
        instance=cfg.instance_name,
        metrics_interval_s=cfg.metrics_interval_s,
        dedup_window_s=cfg.ingest.dedup_window_s,
        clock=clock,
        rejected_path=state / build.REJECTED_FILE,
    )


def telemetry(sims: list[PotlineSim], k0: int, n: int) -> list[SampleRow]:
    """``n`` seconds of every cell from step ``k0``, second by second, as decoded rows."""
    rows: list[SampleRow] = []
    columns = [sim.columns(k0, n) for sim in sims]
    for k in range(n):
        for sim, cols in zip(sims, columns, strict=True):
            ts = int(cols.ts_ns[k])
            i = float(cols.line_current_ka[k])
            v, bath, noise = cols.cell_voltage_v[k], cols.bath_temp_c[k], cols.noise_uohm[k]
            rows.extend(
                (
                    sim.potline,
                    c,
                    ts,
                    float(v[j]),
                    i,
                    {"bath_temp_c": float(bath[j]), "noise_uohm": float(noise[j])},
                    None,
                )
                for j, c in enumerate(sim.cell_ids)
            )
    return rows


def run(
    cells: int, seconds: int, batch_s: int, warmup: int, *, default_gc: bool = False
) -> tuple[float, int]:
    """(CPU seconds of the timed steps, messages they consumed)."""
    if not default_gc:
        tune_gc()  # as the worker process does
    potlines = max(1, cells // CELLS_PER_POTLINE)
    start = (int(time.time()) // 86_400 - 1) * 86_400 * NS + 6 * 3600 * NS
    sims = [
        PotlineSim(f"P{k + 1}", cells=min(cells, CELLS_PER_POTLINE), seed=3, start_ns=start)
        for k in range(potlines)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp), potlines)
        clock = Clock(start)
        eng = engine(cfg, clock)
        inbox = journal.Inbox(journal.connect_inbox(cfg.state_path))
        cpu, messages = 0.0, 0
        for k in range(0, warmup + seconds, batch_s):
            rows = telemetry(sims, k, batch_s)
            inbox.append(rows, [], {"messages": len(rows)})
            clock.now_ns = start + (k + batch_s) * NS + NS // 10
            t0 = time.process_time()
            n = eng.batch_rows
            while n >= eng.batch_rows:  # as ``Engine.run``: a batch that did not fill waits
                n = eng.step()
                if k >= warmup:
                    messages += n
            if k >= warmup:
                cpu += time.process_time() - t0
        return cpu, messages


def main() -> None:
    """Run the simulated seconds and print the CPU per message."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=2000, help="a multiple of 400, or fewer")
    parser.add_argument("--seconds", type=int, default=60, help="timed seconds of telemetry")
    parser.add_argument("--batch-seconds", type=int, default=1, help="seconds of cells a batch")
    parser.add_argument("--warmup", type=int, default=10, help="untimed seconds first")
    parser.add_argument("--default-gc", action="store_true", help="Python's GC thresholds")
    args = parser.parse_args()
    cpu, messages = run(
        args.cells, args.seconds, args.batch_seconds, args.warmup, default_gc=args.default_gc
    )
    print(
        f"{args.cells} cells, batches of {args.batch_seconds} s: {messages:,} messages, "
        f"{cpu:.3f} CPU s in Engine.step(): {cpu / messages * 1e6:.1f} µs/message"
    )


if __name__ == "__main__":
    main()
