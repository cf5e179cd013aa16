"""How fast ``cellmon recalc`` redoes a day from raw samples and its month from its days.

Into a fresh InfluxDB 1.x go a day of raw ``cell`` points (``--cells`` cells, one sample
every ``--interval-s``) in the middle of last month, and for every day of that month the
day points a live instance would have written (``sec_cell`` of each of ``--month-cells``
cells, ``sec_potline``, ``ae_potline``, ``anode_potline``) with a month of metal taps and
anode changes. Then, in one run, each timed on its own:

1. **read**: the day's raw points read back, nothing else: first one hour's query at a
   time, then as the recalculation reads them (``History.batches``: two hours' queries in
   flight), the database's rate and the limit; that read is timed again after the day,
   and the faster of the two is the limit (the same read moves by a tenth from run to run,
   and the ratio with it);
2. **day**: the day's three shifts and the day recalculated (``Recalculation.run``);
3. **month**: the month alone, summed from its days' stored points;
4. **command**: ``cellmon recalc --from DAY --to DAY`` (shifts, day and month, journal,
   outbox, written to the database), with no instance running.

    python -m benchmarks.recalc --cells 50 --interval-s 1 --month-cells 400

A plant's day is 400 cells at 1 Hz (34.6 million samples); 50 cells at 1 Hz have its
samples per cell and minute in an eighth of the time.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from collector import build
from collector.config.loader import load_config
from collector.engine.history import History
from collector.engine.recalc import Recalculation
from collector.engine.targets import Target, days
from collector.sinks.influxql import InfluxQL
from tests.harness import ROOT, write_config
from tests.servers import InfluxV1, http

NS = 1_000_000_000
ZONE = ZoneInfo("Asia/Shanghai")
CHUNK_LINES = 50_000
CLI = (sys.executable, "-m", "collector.commands.cli")
CURRENT_KA = 320.0
T = TypeVar("T")


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


def write_month(influx: InfluxV1, db: str, cells: int, month: date) -> int:
    """Every day's stored day points of the month, a tap and an anode change a cell a day."""
    lines: list[str] = []
    day = month
    while day.month == month.month:
        t = int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp()) * NS
        for c in range(cells):
            volts = 4.1 + 0.001 * (c % 50)
            lines.append(
                f"sec_cell,potline=P1,cell=C{c:03d},period=day energy_kwh={volts * 320 * 24},"
                f"charge_kah={320 * 24.0},hours_covered=24.0,ae_energy_kwh=0.0,"
                f"aluminium_t=2.38,sec_kwh_per_t=13000.0,complete=true {t}"
            )
            tap = t + (c % 24) * 3600 * NS
            lines.append(f"cell_event,potline=P1,cell=C{c:03d},type=metal_tap metal_kg=1500 {tap}")
            lines.append(
                f"cell_event,potline=P1,cell=C{c:03d},type=anode_change "
                f'anode={day.day % 20 + 1},block="590" {tap + 60 * NS}'
            )
        lines.append(f"sec_potline,potline=P1,period=day energy_kwh=1.0,cells={cells}i {t}")
        lines.append(f"ae_potline,potline=P1,period=day count=0i,minutes=0.0 {t}")
        lines.append(
            f"anode_potline,potline=P1,period=day changes={cells}i,target_block={cells}i,"
            f"cycles_known={cells}i,cycle_days_sum={20.0 * cells},on_target={cells}i {t}"
        )
        day += timedelta(days=1)
    return _post(influx, db, lines)


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


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """What ``run`` returns and the wall seconds it took."""
    started = time.perf_counter()
    out = run()
    return out, time.perf_counter() - started


def read_only(history: History, recalc: Recalculation, target: Target) -> int:
    """The target's raw samples read as the recalculation reads them, and nothing else.

    The same windows, queries and read-ahead (two windows in flight): the fastest the
    database gives this history to a reader that does no work.
    """
    t0, t1, _ = recalc.windows(target)
    return sum(len(b.samples) for b in history.batches("P1", t0, t1, recalc.reach.step_ns))


def one_at_a_time(history: History, recalc: Recalculation, target: Target) -> int:
    """The same samples' windows read one after the other: what one query's rate is."""
    t0, t1, _ = recalc.windows(target)
    step = recalc.reach.step_ns
    return sum(len(history.samples("P1", a, min(a + step, t1))) for a in range(t0, t1, step))


def in_process(config: Path, day: date) -> None:
    """Steps 1 to 3, each timed; the ratio of the day's rate to the database's."""
    cfg = load_config(config)
    history = History(InfluxQL(cfg, timeout_s=600))
    recalc = Recalculation(
        lambda: build.recomputable_processors(cfg), history, build.reach(cfg), now_ns=time.time_ns()
    )
    (whole,) = days(build.calendar(cfg), ("shift", "day", "month"), ["P1"], day, day)
    day_only = Target("P1", {s for s in whole.spans if s.kind != "month"})
    month_only = Target("P1", whole.spans - day_only.spans)
    serial, t_serial = timed(lambda: one_at_a_time(history, recalc, day_only))
    read, t_before = timed(lambda: read_only(history, recalc, day_only))
    done, t_day = timed(lambda: recalc.run(day_only, {}))
    _, t_after = timed(lambda: read_only(history, recalc, day_only))
    t_read = min(t_before, t_after)  # the database's best: its rate moves by a tenth
    month, t_month = timed(lambda: recalc.run(month_only, {}))
    print(
        f"read, one query at a time: {serial:,} samples in {t_serial:.1f} s, "
        f"{serial / t_serial:,.0f} samples/s"
    )
    print(
        f"read:  {read:,} samples in {t_read:.1f} s, {read / t_read:,.0f} samples/s "
        f"(the faster of {t_before:.1f} s before the day and {t_after:.1f} s after it)"
    )
    print(
        f"day:   {done.samples:,} samples in {t_day:.1f} s, {done.samples / t_day:,.0f} "
        f"samples/s = {t_read / t_day:.2f} of the read rate"
    )
    print(f"month: {len(month.points)} points from its days' points in {t_month:.2f} s")


def main() -> None:
    """Write the data, recalculate, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--interval-s", type=int, default=1)
    parser.add_argument("--month-cells", type=int, default=400)
    args = parser.parse_args()
    first = datetime.now(ZONE).date().replace(day=1)
    day = (first - timedelta(days=1)).replace(day=15)  # last month: complete
    t0 = int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp()) * NS
    with tempfile.TemporaryDirectory() as tmp, InfluxV1(Path(tmp) / "influx") as influx:
        influx.create_database("bench")
        samples = write_day(influx, "bench", args.cells, args.interval_s, t0)
        write_month(influx, "bench", args.month_cells, day.replace(day=1))
        config = write_config(
            Path(tmp) / "cfg", mqtt_port=1, influx_url=influx.url, database="bench"
        )
        in_process(config, day)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = [*CLI, "recalc", "--quiet", "--from", str(day), "--to", str(day)]
        done, wall = timed(
            lambda: subprocess.run(
                [*command, "--config", str(config)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(done.stdout.strip())
    print(
        f"command: recalc of a day of {args.cells} cells every {args.interval_s} s "
        f"({samples:,} samples) and its month of {args.month_cells} cells from its days: "
        f"{wall:.1f} s wall, "
        f"{cpu:.1f} CPU s of the command, {samples / wall:,.0f} samples/s"
    )


if __name__ == "__main__":
    main()
