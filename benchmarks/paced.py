"""How one consumer is measured, drained or paced, and the paced mode's runs.

Drained: the consumer starts against the backlog its session holds; the rate is from its
connection (a bare subscriber: its first message) to the n-th point in InfluxDB (a bare
subscriber: its n-th message); CPU from /proc over the whole process tree, less what it
had spent before the drain began.

Paced: for each rate, each consumer alone against its own fresh Mosquitto, while the paced
publisher (benchmarks/publisher.py, same seed, so the same messages) sends ``rate``
messages a second for ``seconds``. CPU is that of the consumer's whole process tree (cellmon:
its MQTT process and its worker) from the publisher's first message until everything
arrived; the rate is the messages over that same time.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.consumers import Consumer, Target, register
from benchmarks.pipeline import children, cpu_seconds, peak_rss_kib
from benchmarks.publisher import potline_ids
from tests.harness import ROOT
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto


@dataclass(frozen=True)
class Result:
    consumer: str
    mode: str  # "drained", "paced-400", ...
    messages: int  # expected
    arrived: int  # received (bare subscriber) or points in InfluxDB (pipeline)
    seconds: float  # over which the rate is taken
    cpu_s: float  # CPU of the consumer's process tree over those seconds
    startup_cpu_s: float  # CPU it had spent before them (not in cpu_s)
    rss_kib: int  # peak resident set, summed over the process tree
    writes: bool  # points into InfluxDB (else a bare subscriber)
    publisher: dict[str, float] = field(default_factory=dict)  # paced: what it reported
    own_cpu_s: float = math.nan  # the part of cpu_s spent by the first process alone

    @property
    def rate(self) -> float:
        return self.arrived / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_msg(self) -> float:
        return self.cpu_s / self.arrived * 1e6 if self.arrived else float("nan")

    def as_json(self) -> dict[str, object]:
        out = asdict(self)
        out.update(
            rate_msg_s=self.rate,
            rate_points_s=self.rate if self.writes else None,
            cpu_us_per_msg=self.cpu_us_per_msg,
            complete=self.arrived == self.messages,
        )
        return out


def wait_for_arrival(consumer: Consumer, n: int, stall_s: float = 60) -> None:
    """Poll until n arrived; give up when the count stops growing for ``stall_s``."""
    last, since = -1, time.monotonic()
    while (count := consumer.arrived()) < n:
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > stall_s:
            print(f"{consumer.name}: stuck at {count} of {n} for {stall_s:.0f} s")
            print(consumer.describe())
            return
        time.sleep(0.2)


# Runs the paced publisher while the consumer (this pid) listens: returns when its clock
# started, the consumer's CPU seconds then (cpu_split), and the publisher's report.
Begin = Callable[[int], tuple[float, tuple[float, float], dict[str, float]]]


def measure(consumer: Consumer, target: Target, begin: Begin | None = None) -> Result:
    """Start the consumer, run ``begin`` (the paced publisher, or nothing), wait, measure.

    Without ``begin`` (drained) the clock starts at the connection; with it, when it starts.
    """
    pid = consumer.start(target)
    publisher: dict[str, float] = {}
    try:
        start, (cpu0, own0) = time.perf_counter(), cpu_split(pid)
        if begin is not None:
            start, (cpu0, own0), publisher = begin(pid)
        wait_for_arrival(consumer, target.n)
        end = time.perf_counter()
        seconds = end - start
        if publisher:  # how long after the last publish everything had arrived
            publisher["tail_s"] = end - publisher.pop("ended")
        (cpu, own), rss = cpu_split(pid), peak_rss_kib(pid)
        arrived, internal = consumer.arrived(), consumer.internal()
    finally:
        consumer.stop()
    arrived = max(arrived, consumer.arrived())  # a bare subscriber's last count, if stuck
    if internal is not None and begin is None:  # a bare subscriber's own timing
        seconds, cpu0 = internal
        own0 = cpu0  # a bare subscriber is one process
    return Result(
        consumer.name,
        target.label,
        target.n,
        arrived,
        seconds,
        cpu - cpu0,
        cpu0,
        rss,
        consumer.writes,
        publisher,
        own - own0,
    )


def cpu_split(pid: int) -> tuple[float, float]:
    """CPU s of the process tree, and of its first process alone (cellmon: the MQTT one)."""
    total = cpu_seconds(pid)
    return total, total - sum(cpu_seconds(child) for child in children(pid))


def paced_publisher(port: int, rate: int, seconds: int, seed: int) -> Begin:
    """``begin`` for ``measure``: the publisher from its start to its end."""

    def begin(pid: int) -> tuple[float, tuple[float, float], dict[str, float]]:
        idle = settle(pid)
        argv = [str(port), str(rate), str(seconds), str(seed)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.publisher", *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        start, cpu0 = time.perf_counter(), cpu_split(pid)
        if line != "go":
            msg = f"paced publisher: {line!r}"
            raise SystemExit(msg)
        report = json.loads(proc.stdout.readline())
        report["ended"] = time.perf_counter()  # its last message acknowledged
        report["consumer_idle_load"] = idle  # CPU s per s, before the first message
        # paho's network thread takes up to a second to stop: not to be waited for here.
        threading.Thread(target=proc.communicate, daemon=True).start()
        return start, cpu0, report

    return begin


def settle(pid: int, window_s: float = 0.5, idle: float = 0.1, limit_s: float = 30) -> float:
    """Wait until the process tree is idle (CPU below ``idle`` of a core over a window).

    A consumer logs its connection before it is done starting (cellmon's worker is still
    importing): that startup is not the cost of the messages. The idle load it settles at
    (polling, timers) is, and stays in the figure. Returns that load, CPU s per second.
    """
    deadline = time.monotonic() + limit_s
    while True:
        before = cpu_seconds(pid)
        time.sleep(window_s)
        load = (cpu_seconds(pid) - before) / window_s
        if load < idle or time.monotonic() > deadline:
            return load


def run_paced(
    work: Path,
    influx: InfluxV1,
    chosen: list[Consumer],
    args: argparse.Namespace,
) -> list[Result]:
    """Every consumer at every rate, one at a time, each against a fresh broker."""
    results = []
    for rate in args.rates:
        label = f"paced-{rate}"
        cells = len(potline_ids(rate)) * 100  # potlines_config's hundred cells a potline
        for consumer in chosen:
            here = work / label / consumer.name
            print(f"{label}: {consumer.name} ...", flush=True)
            with Mosquitto(here / "mosquitto", extra_config=PLANT_BROKER_SETTINGS) as broker:
                n = rate * args.seconds
                target = Target(here, broker.port, influx, n, label, cells, args.shards)
                register(consumer, target)  # nothing is lost if it subscribes late
                begin = paced_publisher(broker.port, rate, args.seconds, args.seed)
                results.append(measure(consumer, target, begin))
    return results
