"""Sustained rate: can cellmon keep up with the 10 Hz noise analysis, and how late are points?

domain.md's 10 Hz resistance-noise analysis of 1,600 cells is 16,000 samples/s. Here a
line gateway per potline publishes its cells' samples at a fixed total rate for a fixed
time (``mosquitto_pub -l``, C, QoS 1, one message per sample, the cell named in the
payload: the gateway layout of docs/rules.md), into ``cellmon run`` with the shipped rules
and ``--shards`` processes. Every half second the newest point of each potline visible in
InfluxDB is compared with the clock: the publish-to-visible delay (each sample's ``ts`` is
its publish time). The benchmark reports the rate reached, the delay percentiles, CPU
seconds per million samples and peak RSS; whether the publishers kept the pace is part of
the answer (they share the machine's cores with everything else).

    python -m benchmarks.sustained --rate 16000 --seconds 300 --shards 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from benchmarks.pipeline import SHIPPED_RULES, cpu_seconds, peak_rss_kib, potlines_config
from tests.harness import ROOT, wait_for, write_config
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto

GATEWAY_RULES = """\
inputs:
  - name: gateway
    topic: plant/{potline}/gateway
    kind: telemetry
    fields:
      cell: cell
"""
TICK_S = 0.01
POLL_S = 0.5


def feed(pub: subprocess.Popen[bytes], potline: int, cells: int, rate: float, until: float) -> int:
    """Write ``rate`` samples a second to a ``mosquitto_pub -l``; the number written."""
    assert pub.stdin is not None
    per_tick = rate * TICK_S
    owed = 0.0
    sent = 0
    next_tick = time.monotonic()
    while time.monotonic() < until:
        owed += per_tick
        now_ms = time.time_ns() // 1_000_000
        lines = []
        while owed >= 1:
            cell = sent % cells
            doc = {
                "ts": now_ms,
                "cell": f"C{cell:03d}",
                "cell_voltage_v": 4.1 + (sent % 97) / 1000,
                "line_current_ka": 300.0 + potline,
                "noise_uohm": 7.5,
            }
            lines.append(orjson.dumps(doc))
            sent += 1
            owed -= 1
        pub.stdin.write(b"\n".join(lines) + b"\n" if lines else b"")
        next_tick += TICK_S
        time.sleep(max(0.0, next_tick - time.monotonic()))
    pub.stdin.close()
    return sent


def newest_ns(influx: InfluxV1, db: str, potline: str) -> int | None:
    rows = influx.query(f"SELECT last(voltage_v) FROM cell WHERE potline = '{potline}'", db)
    return int(rows[0]["time"]) if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=16_000, help="samples per second, total")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--potlines", type=int, default=4)
    parser.add_argument("--cells", type=int, default=400, help="per potline")
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    publisher = shutil.which("mosquitto_pub")
    if publisher is None:
        msg = "mosquitto_pub not found: apt-get install mosquitto-clients"
        raise SystemExit(msg)
    work = Path(tempfile.mkdtemp(prefix="cellmon-sustained-"))
    with (
        Mosquitto(work / "mosquitto", extra_config=PLANT_BROKER_SETTINGS) as broker,
        InfluxV1(work / "influxd") as influx,
    ):
        db = "sustained"
        influx.create_database(db)
        config = write_config(
            work / "cellmon",
            mqtt_port=broker.port,
            influx_url=influx.url,
            database=db,
            rules=SHIPPED_RULES.read_text(),
            extra=potlines_config(args.potlines * 100),
        )
        (config.parent / "rules" / "gateway.yaml").write_text(GATEWAY_RULES)
        log_path = work / "cellmon.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "collector.commands.cli",
                    "run",
                    "--config",
                    str(config),
                    "--shards",
                    str(args.shards),
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        sessions = min(args.shards, args.potlines)
        wait_for(
            lambda: log_path.read_text().count("connected to") >= sessions, 60, log_path.read_text
        )
        start_cpu = cpu_seconds(proc.pid)
        ids = [f"P{k + 1}" for k in range(args.potlines)]
        pubs = [
            subprocess.Popen(
                [
                    publisher,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(broker.port),
                    "-q",
                    "1",
                    "-M",
                    "100",
                    "-t",
                    f"plant/{p}/gateway",
                    "-l",
                    "-i",
                    f"gateway-{p}",
                ],
                stdin=subprocess.PIPE,
            )
            for p in ids
        ]
        t0 = time.monotonic()
        until = t0 + args.seconds
        sent: list[int] = [0] * len(ids)

        def run_feed(k: int) -> None:
            sent[k] = feed(pubs[k], k, args.cells, args.rate / len(ids), until)

        feeders = [threading.Thread(target=run_feed, args=(k,)) for k in range(len(ids))]
        for f in feeders:
            f.start()
        delays: list[float] = []
        while time.monotonic() < until:
            time.sleep(POLL_S)
            now = time.time_ns()
            for p in ids:
                newest = newest_ns(influx, db, p)
                if newest is not None:
                    delays.append((now - newest) / 1e9)
        for f in feeders:
            f.join()
        for pub in pubs:
            pub.wait(120)
        elapsed = time.monotonic() - t0
        total = sum(sent)
        wait_for(lambda: count(influx, db) >= total, 600, lambda: log_path.read_text()[-2000:])
        drained = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - start_cpu
        rss = peak_rss_kib(proc.pid)
        proc.terminate()
        proc.wait(120)
    report(args, total, elapsed, drained, delays, cpu, rss)


def count(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return int(rows[0]["count"]) if rows else 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(
    args: argparse.Namespace,
    total: int,
    elapsed: float,
    drained: float,
    delays: list[float],
    cpu: float,
    rss: int,
) -> None:
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {python}")
    print(
        f"asked {args.rate:,.0f} samples/s for {args.seconds:.0f} s over {args.potlines} potlines, "
        f"{args.shards} shards"
    )
    print(f"published {total:,} samples in {elapsed:.1f} s: {total / elapsed:,.0f} samples/s")
    print(f"all in InfluxDB after {drained:.1f} s: {total / drained:,.0f} samples/s end to end")
    print(
        f"publish-to-visible delay: p50 {percentile(delays, 0.5):.2f} s, "
        f"p99 {percentile(delays, 0.99):.2f} s, max {max(delays, default=float('nan')):.2f} s"
    )
    print(f"cellmon CPU: {cpu:.1f} s, {cpu / total * 1e6:.1f} s per million samples")
    print(f"cellmon peak RSS, all processes: {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
