"""End-to-end throughput of ``cellmon run`` against the bare paho-mqtt ceiling.

Both consumers drain the same backlog of QoS 1 messages that the broker queued for their
persistent sessions, so the publisher's speed enters neither figure. The broker keeps its
default in-flight window (Mosquitto: 20 unacknowledged messages per client); only its
queue limit is lifted so it can hold the backlog, as docs/operations.md recommends.

- ceiling: a bare paho subscriber that only receives and parses each message (auto ack);
- cellmon: the whole pipeline, from its connection to the last point counted in InfluxDB.

The ratio of the two rates is the figure of merit; peak memory is each process's maximum
resident set.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import ROOT, publish_all, wait_for, write_config
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto

TOPICS = "smelter/+/+/telemetry"
CEILING_ID = "bench-ceiling"
PIPELINE_ID = "bench-cellmon"

CEILING = r"""
import os, sys, time
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port, client_id, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
seen = {"count": 0, "first": 0.0, "last": 0.0}

def on_message(client, userdata, msg):
    orjson.loads(msg.payload)
    if seen["count"] == 0:
        seen["first"] = time.perf_counter()
        t = os.times()
        seen["startup_cpu"] = t.user + t.system
    seen["count"] += 1
    if seen["count"] >= n:
        seen["last"] = time.perf_counter()
        client.disconnect()

c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_forever()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(seen["count"], seen["last"] - seen["first"], hwm, seen["startup_cpu"])
"""


def potlines(cells: int) -> list[str]:
    """The potlines ``payloads`` spreads the cells over: a hundred cells each."""
    return [f"P{k + 1}" for k in range((cells + 99) // 100)]


def potlines_config(cells: int) -> str:
    """``plant.potlines`` entries after the first (P1 is in every test config)."""
    return "".join(
        f"    - id: {p}\n      baseline_sec_kwh_per_t: 13450\n" for p in potlines(cells)[1:]
    )


def cellmon_sessions(
    cells: int, shards: int, client_id: str = PIPELINE_ID
) -> dict[str, tuple[str, ...]]:
    """The MQTT sessions of ``cellmon run [--shards N]`` and what each subscribes to.

    Registered before the backlog is published, so the broker queues it for them: one
    session, or one per shard (``{client_id}-sK``) with its potlines dealt round-robin.
    """
    ids = potlines(cells)
    if not shards:
        return {client_id: tuple(f"smelter/{p}/+/telemetry" for p in ids)}
    return {
        f"{client_id}-s{k + 1}": tuple(f"smelter/{p}/+/telemetry" for p in ids[k::shards])
        for k in range(shards)
        if ids[k::shards]
    }


def payloads(samples: int, cells: int) -> list[tuple[str, bytes]]:
    """One telemetry object per message, the cells reporting in turn once a second."""
    t0 = (int(time.time()) - 86_400) * 1000
    out = []
    for k in range(samples):
        cell, step = k % cells, k // cells
        doc = {
            "ts": t0 + step * 1000,
            "cell_voltage_v": 4.1 + (k % 97) / 1000,
            "line_current_ka": 300.0 + (k % 13) / 10,
            "bath_temp_c": 955.0,
            "noise_uohm": 7.5,
        }
        out.append((f"smelter/P{cell // 100 + 1}/C{cell:03d}/telemetry", orjson.dumps(doc)))
    return out


def register_session(port: int, client_id: str, filters: tuple[str, ...] = (TOPICS,)) -> None:
    """Create a persistent subscribed session, so the broker queues messages for it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = []
    client.on_subscribe = lambda *args: subscribed.append(True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe([(f, 1) for f in filters])
    wait_for(lambda: subscribed, 10)
    client.disconnect()
    client.loop_stop()


@dataclass(frozen=True)
class Drain:
    """What one consumer cost to drain the backlog.

    ``cpu_s`` is the user + system time of the consumer's processes over their whole life
    up to the end of the drain, read from outside; ``startup_cpu_s`` the part of it spent
    before the drain began (imports, connecting), so ``cpu_s - startup_cpu_s`` is the drain.
    """

    rate: float  # samples (or points) per second
    rss_kib: int  # peak resident set (VmHWM), summed over the consumer's processes
    cpu_s: float
    startup_cpu_s: float


def run_ceiling(port: int, n: int, client_id: str = CEILING_ID) -> Drain:
    """The bare subscriber's drain: rate from its first to its n-th message."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-c", CEILING, str(port), client_id, str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    count, seconds, rss, startup = int(out[0]), float(out[1]), int(out[2]), float(out[3])
    return Drain(count / seconds, rss, cpu, startup)


SHIPPED_RULES = ROOT / "config" / "rules" / "default.yaml"


def influx_count(influx: InfluxV1, db: str) -> int:
    rows = influx.query("SELECT count(voltage_v) FROM cell", db)
    return int(rows[0]["count"]) if rows else 0


def run_pipeline(
    work: Path,
    port: int,
    influx: InfluxV1,
    db: str,
    n: int,
    *,
    client_id: str = PIPELINE_ID,
    cells: int = 400,
    shards: int = 0,
) -> Drain:
    """``cellmon run``'s drain: rate from its connection to the n-th point in InfluxDB.

    The config owns every potline of the backlog (contract 5.1: an instance stores only
    the potlines it owns); ``shards`` > 0 deals them into that many processes.
    """
    config = cellmon_config(work, port, influx, db, client_id=client_id, cells=cells)
    proc, log_path = start_pipeline(config, len(cellmon_sessions(cells, shards)), shards)
    start = time.perf_counter()
    startup_cpu = cpu_seconds(proc.pid)
    wait_for(lambda: influx_count(influx, db) >= n, 3600, lambda: log_path.read_text()[-2000:])
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(proc.pid)
    rss = peak_rss_kib(proc.pid)
    stop_pipeline(proc, log_path)
    return Drain(n / seconds, rss, cpu, startup_cpu)


def cellmon_config(
    work: Path,
    port: int,
    influx: InfluxV1,
    db: str,
    *,
    client_id: str = PIPELINE_ID,
    cells: int = 400,
    mqtt_options: str = "",
) -> Path:
    """The config of a benchmarked ``cellmon run``: shipped rules, every potline owned."""
    return write_config(
        work,
        mqtt_port=port,
        influx_url=influx.url,
        database=db,
        client_id=client_id,
        metrics_interval_s=10,
        rules=SHIPPED_RULES.read_text(),  # what a plant runs: derived field and alarms
        extra=potlines_config(cells),
        mqtt_options=mqtt_options,
    )


def start_pipeline(
    config: Path, sessions: int, shards: int = 0
) -> tuple[subprocess.Popen[bytes], Path]:
    """``cellmon run`` on a config, once all its ``sessions`` logged their connection."""
    log_path = config.parent / "cellmon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector.commands.cli", "run", "--config", str(config)]
            + (["--shards", str(shards)] if shards else []),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: log_path.read_text().count("connected to") >= sessions, 60, log_path.read_text)
    return proc, log_path


def stop_pipeline(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    proc.terminate()
    if proc.wait() != 0:
        msg = f"cellmon run exited with status {proc.returncode}: see {log_path}"
        raise SystemExit(msg)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system time of a live process and all its descendants, reaped ones included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # utime stime cutime cstime are fields 14 to 17; the command name (field 2) may hold
    # spaces, so count from the parenthesis that closes it.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / CLOCK_TICKS + sum(cpu_seconds(c) for c in children(pid))


def peak_rss_kib(pid: int) -> int:
    """Peak resident memory (VmHWM) of a process and all its descendants, summed."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    return hwm + sum(peak_rss_kib(c) for c in children(pid))


def children(pid: int) -> list[int]:
    """The child processes of a process, whichever of its threads started them."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(c) for t in tasks for c in (t / "children").read_text().split()]


def backlog_arguments(description: str | None, samples: int) -> argparse.Namespace:
    """The options of a backlog benchmark: its size, its cells, cellmon's shards."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--cells", type=int, default=400)
    parser.add_argument("--shards", type=int, default=0, help="cellmon run --shards N (0: one)")
    return parser.parse_args()


def main() -> None:
    """Publish the backlog, then let each consumer drain it, and report."""
    args = backlog_arguments(__doc__, 500_000)
    work = Path(tempfile.mkdtemp(prefix="cellmon-bench-"))
    broker = Mosquitto(work / "mosquitto", extra_config=PLANT_BROKER_SETTINGS)
    influx = InfluxV1(work / "influxd")
    with broker, influx:
        db = "bench"
        influx.create_database(db)
        register_session(broker.port, CEILING_ID)
        for client_id, filters in cellmon_sessions(args.cells, args.shards).items():
            register_session(broker.port, client_id, filters)
        messages = payloads(args.samples, args.cells)
        t = time.perf_counter()
        publish_all(broker.port, messages)
        publish_s = time.perf_counter() - t
        ceiling = run_ceiling(broker.port, args.samples)
        cellmon = run_pipeline(
            work / "cellmon",
            broker.port,
            influx,
            db,
            args.samples,
            cells=args.cells,
            shards=args.shards,
        )
    report(args, ceiling, cellmon, publish_s)


def report(args: argparse.Namespace, ceiling: Drain, cellmon: Drain, publish_s: float) -> None:
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {python}")
    print(
        f"backlog: {args.samples} samples, one per QoS 1 message, {args.cells} cells "
        f"(published in {publish_s:.1f} s)"
    )
    print(
        f"ceiling (bare paho subscriber, parse only): {ceiling.rate:,.0f} samples/s, "
        f"peak RSS {ceiling.rss_kib / 1024:.0f} MiB"
    )
    shards = f", {args.shards} shards" if args.shards else ""
    drain_cpu = cellmon.cpu_s - cellmon.startup_cpu_s
    print(
        f"cellmon run{shards} → InfluxDB 1.x: {cellmon.rate:,.0f} samples/s, "
        f"peak RSS {cellmon.rss_kib / 1024:.0f} MiB, "
        f"{drain_cpu / args.samples * 1e6:.1f} CPU s per million samples"
    )
    print(f"ratio: {cellmon.rate / ceiling.rate:.2f}")


if __name__ == "__main__":
    main()
