"""How fast ``cellmon recalc`` reads a potline's history back and redoes its periods.

A day of raw ``cell`` points (``--cells`` cells, one sample every ``--interval-s``) is
written straight into a fresh InfluxDB 1.x, then ``cellmon recalc`` of that day runs with
no instance running (its shifts, the day and the month so far: the month is read from its
first day to now, an hour per query, like a real one). Wall time, CPU seconds of the
command and history samples per second are printed; docs/replay.md quotes the result.

    python -m benchmarks.recalc --cells 100 --interval-s 10
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.harness import ROOT, write_config
from tests.servers import InfluxV1, http

NS = 1_000_000_000
ZONE = ZoneInfo("Asia/Shanghai")
CHUNK_LINES = 50_000
CLI = (sys.executable, "-m", "collector.commands.cli")


def write_day(influx: InfluxV1, db: str, cells: int, interval_s: int, t0_ns: int) -> int:
    """The day's raw points, in chunks; the number of samples written."""
    lines: list[str] = []
    n = 0
    for k in range(86_400 // interval_s + 1):
        t = t0_ns + k * interval_s * NS
        for c in range(cells):
            volts = 4.1 + 0.001 * (c % 50)
            lines.append(f"cell,potline=P1,cell=C{c:03d} voltage_v={volts},current_ka=320 {t}")
        if len(lines) >= CHUNK_LINES:
            n += _post(influx, db, lines)
    return n + _post(influx, db, lines)


def _post(influx: InfluxV1, db: str, lines: list[str]) -> int:
    if not lines:
        return 0
    status, body = http("POST", f"{influx.url}/write?db={db}", "\n".join(lines).encode())
    if status != 204:
        msg = f"write refused: {status} {body[:200]!r}"
        raise SystemExit(msg)
    n = len(lines)
    lines.clear()
    return n


def main() -> None:
    """Write the day, recalculate it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--interval-s", type=int, default=10)
    args = parser.parse_args()
    day = datetime.now(ZONE).date() - timedelta(days=1)
    t0 = int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp()) * NS
    with tempfile.TemporaryDirectory() as tmp, InfluxV1(Path(tmp) / "influx") as influx:
        influx.create_database("bench")
        samples = write_day(influx, "bench", args.cells, args.interval_s, t0)
        config = write_config(
            Path(tmp) / "cfg", mqtt_port=1, influx_url=influx.url, database="bench"
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [
                *CLI,
                "recalc",
                "--quiet",
                "--from",
                str(day),
                "--to",
                str(day),
                "--config",
                str(config),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(done.stdout.strip())
    print(
        f"recalc of a day of {args.cells} cells every {args.interval_s} s ({samples:,} samples) "
        f"and its month so far: {wall:.1f} s wall, {cpu:.1f} CPU s of the command, "
        f"{samples / wall:,.0f} samples/s"
    )


if __name__ == "__main__":
    main()
