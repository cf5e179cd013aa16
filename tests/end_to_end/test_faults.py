"""Faults injected into a running ``cellmon run`` through real Mosquitto and InfluxDB 1.x.

Each test publishes a known stream with QoS 1 while the fault happens, and ends with the
database holding exactly what was published: every sample once (its row read back, and
the journal's ``accepted`` counter, which a doubled commit would push past the count), and
``sec_cell`` KPIs equal to trapezoids worked out here from the published values (a sample
integrated twice, or a KPI state lost in a crash, moves the energy).

The short outages (database and broker down while the publisher waits, the buffer bound,
the exit code 3 of a stop with the database down) are in ``test_outage.py``; these are the
faults under load: SIGKILL, a minute without the database, a broker restart, a full disk,
and a damaged journal file.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import uuid4
from zoneinfo import ZoneInfo

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import (
    ROOT,
    Pipeline,
    accepted_so_far,
    kill_leftovers,
    publish_all,
    wait_for,
    write_config,
)
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto, ServerError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mqtt_client")]

ZONE = ZoneInfo("Asia/Shanghai")  # write_config's plant timezone; shifts at 00, 08, 16
NS = 1_000_000_000
STEP_S = 30  # below max_gap_s (60): every interval between two samples is covered
SHIFT_NS = 8 * 3600 * NS
CE = 0.925  # write_config's potline P1 keeps the default current efficiency
FARADAY = 0.33557e-3
KILLS = 6
KILL_SEED = 20_240_301
OUTAGE_S = 60.0


def local_midnight(days_ago: int) -> datetime:
    today = datetime.now(ZONE).date() - timedelta(days=days_ago)
    return datetime(today.year, today.month, today.day, tzinfo=ZONE)


START = local_midnight(3)
START_NS = int(START.timestamp()) * NS


@dataclass(frozen=True)
class Stream:
    """``steps`` samples of each of ``cells`` cells from a local midnight, ``STEP_S`` apart.

    Voltage and current vary from sample to sample, so that a sample integrated twice or
    missed changes every KPI of its period.
    """

    cells: int
    steps: int

    @staticmethod
    def cell(c: int) -> str:
        return f"C{c:02d}"

    @staticmethod
    def ts_ns(k: int) -> int:
        return START_NS + k * STEP_S * NS

    @staticmethod
    def values(c: int, k: int) -> tuple[float, float]:
        """(cell voltage V, line current kA) of sample k of cell c."""
        return round(4.0 + 0.003 * (k % 101) + 0.02 * c, 4), round(300 + 0.05 * (k % 17), 3)

    def messages(self) -> list[tuple[str, bytes]]:
        """One message per sample, the cells of a step together, as controllers send them."""
        out = []
        for k in range(self.steps):
            for c in range(self.cells):
                v, i = self.values(c, k)
                body = {"ts": self.ts_ns(k) // 1_000_000, "cell_voltage_v": v, "line_current_ka": i}
                out.append((f"smelter/P1/{self.cell(c)}/telemetry", orjson.dumps(body)))
        return out

    def rows(self) -> set[tuple[str, int, float, float]]:
        """Every (cell, time, voltage, current) the database must hold, each once."""
        return {
            (self.cell(c), self.ts_ns(k), *self.values(c, k))
            for c in range(self.cells)
            for k in range(self.steps)
        }

    def periods(self) -> dict[tuple[str, int], int]:
        """(period, start ns) → end ns of every period the stream touches."""
        last = self.ts_ns(self.steps - 1)
        month = START.replace(day=1)
        next_month = (month + timedelta(days=32)).replace(day=1)
        out = {
            ("shift", START_NS + j * SHIFT_NS): START_NS + (j + 1) * SHIFT_NS
            for j in range((last - START_NS) // SHIFT_NS + 1)
        }
        out[("day", START_NS)] = START_NS + 3 * SHIFT_NS
        out[("month", int(month.timestamp()) * NS)] = int(next_month.timestamp()) * NS
        return out

    def kpis(self) -> dict[tuple[str, str, int], tuple[float, float, float, bool]]:
        """(cell, period, start) → (energy kWh, aluminium t, hours covered, complete).

        Trapezoids over the intervals between consecutive samples inside the period (the
        period boundaries fall on samples, so no interval straddles one).
        """
        last = self.ts_ns(self.steps - 1)
        out = {}
        for (period, start), end in self.periods().items():
            ks = [k for k in range(self.steps - 1) if start <= self.ts_ns(k) < end]
            hours = len(ks) * STEP_S / 3600
            for c in range(self.cells):
                energy = charge = 0.0
                for k in ks:
                    (u0, i0), (u1, i1) = self.values(c, k), self.values(c, k + 1)
                    energy += (u0 * i0 + u1 * i1) / 2 * STEP_S / 3600
                    charge += (i0 + i1) / 2 * STEP_S / 3600
                metal = FARADAY * charge * CE
                out[(self.cell(c), period, start)] = (energy, metal, hours, last >= end)
        return out


class Publisher(threading.Thread):
    """A controller gateway: QoS 1 at a steady rate, with a persistent session of its own.

    It waits while the broker is away and lets paho resend what was not acknowledged, so
    the broker gets every message at least once whatever happens to it.
    """

    def __init__(self, port: int, messages: list[tuple[str, bytes]], rate_hz: float) -> None:
        super().__init__(name="publisher", daemon=True)
        assert len(messages) < 65536  # message ids are then never reused
        self.messages, self.rate_hz = messages, rate_hz
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid4().hex[:8]}", clean_session=False
        )
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.connected = threading.Event()
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self._lock = threading.Lock()
        self._sent: set[int] = set()
        self._acked: set[int] = set()
        self.client.on_publish = lambda _c, _u, mid, *_: self._ack(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._halt = threading.Event()
        RUNNING.append(self)

    def _ack(self, mid: int) -> None:
        with self._lock:
            self._acked.add(mid)

    def run(self) -> None:
        begin = time.monotonic()
        for n, (topic, payload) in enumerate(self.messages):
            if self._halt.wait(max(0.0, begin + n / self.rate_hz - time.monotonic())):
                return
            self.connected.wait(60)
            info = self.client.publish(topic, payload, qos=1)
            with self._lock:
                self._sent.add(info.mid)

    def acknowledged(self) -> int:
        """How many messages the broker has taken so far."""
        with self._lock:
            return len(self._acked & self._sent)

    def unacknowledged(self) -> int:
        return len(self.messages) - self.acknowledged()

    def finish(self) -> None:
        """Wait until every message was published and acknowledged by the broker."""
        self.join(600)
        wait_for(lambda: self.unacknowledged() == 0, 120, lambda: f"{self.unacknowledged()}")
        self.abandon()

    def abandon(self) -> None:
        """Stop publishing and disconnect (a failed test must not feed the next one)."""
        self._halt.set()
        self.join(10)
        self.client.loop_stop()
        self.client.disconnect()


RUNNING: list[Publisher] = []


@pytest.fixture(autouse=True)
def _no_leftover_publishers() -> Iterator[None]:
    yield
    while RUNNING:
        RUNNING.pop().abandon()


def kill_group(pipeline: Pipeline) -> None:
    """SIGKILL to ``cellmon run`` and its worker at once: no process gets to clean up."""
    assert pipeline.proc is not None
    os.killpg(pipeline.proc.pid, signal.SIGKILL)
    pipeline.proc.wait(30)


def kill_after(pipeline: Pipeline, state: Path, target: int) -> int:
    """Kill the pipeline once it accepted ``target`` samples in all; how many it had then."""
    deadline = time.monotonic() + 60
    while (accepted := accepted_so_far(state)) < target:
        assert time.monotonic() < deadline, pipeline.new_log()
        time.sleep(0.002)
    kill_group(pipeline)
    return accepted


def stored_rows(influx: InfluxV1, db: str) -> list[tuple[str, int, float, float]]:
    """Every ``cell`` point as (cell, time, voltage, current); [] while the server is down."""
    try:
        rows = influx.query("SELECT voltage_v, current_ka FROM cell GROUP BY cell", db)
    except (OSError, ServerError):  # down or starting: nothing to count yet
        return []
    return [(r["cell"], r["time"], r["voltage_v"], r["current_ka"]) for r in rows]


def counters(state: Path) -> dict[str, int]:
    """The journal's counters of both files (read after the pipeline stopped)."""
    out: dict[str, int] = {}
    for name in ("inbox.sqlite", "journal.sqlite"):
        with closing(sqlite3.connect(state / name)) as conn:
            out |= dict(conn.execute("SELECT name, value FROM counters").fetchall())
    return out


def assert_exactly_published(influx: InfluxV1, db: str, state: Path, stream: Stream) -> None:
    """Every sample once, nothing else, and the KPIs of a run without the fault."""
    rows = stored_rows(influx, db)
    assert sorted(rows) == sorted(stream.rows())
    counts = counters(state)
    assert counts["accepted"] == stream.cells * stream.steps  # each sample committed once
    assert counts.get("late", 0) == 0
    got = influx.query(
        "SELECT energy_kwh, aluminium_t, hours_covered, complete FROM sec_cell "
        "GROUP BY cell, period",
        db,
    )
    want = stream.kpis()
    assert {(r["cell"], r["period"], r["time"]) for r in got} == set(want)
    for r in got:
        energy, metal, hours, complete = want[(r["cell"], r["period"], r["time"])]
        assert r["energy_kwh"] == pytest.approx(energy, rel=1e-9), r
        assert r["aluminium_t"] == pytest.approx(metal, rel=1e-9), r
        assert r["hours_covered"] == pytest.approx(hours, rel=1e-9), r
        assert r["complete"] is complete, r


def arrived(influx: InfluxV1, db: str, stream: Stream) -> bool:
    return len(stored_rows(influx, db)) >= stream.cells * stream.steps


def pipeline_for(tmp_path: Path, broker: Mosquitto, influx: InfluxV1) -> Pipeline:
    config = write_config(tmp_path, mqtt_port=broker.port, influx_url=influx.url, database="plant")
    return Pipeline(config, tmp_path / "cellmon.log")


def test_sigkill_of_the_process_group_mid_batch_loses_and_doubles_nothing(
    tmp_path: Path, plant_broker: Mosquitto, influx: InfluxV1
) -> None:
    """Six kills of MQTT process and worker together at seeded random moments, each
    followed by a restart on the same state directory, while the controllers publish.

    Cellmon is down for a second before each start, so the broker holds a backlog; each
    kill comes after a seeded number of further samples were accepted, with messages
    still outstanding at the broker: mid-batch, in the MQTT process and in the worker.

    The broker keeps cellmon's persistent session (a fixed ``client_id``, clean session
    off) and redelivers what was not acknowledged; the shift that ends at 08:00 is
    complete, the later periods open.
    """
    stream = Stream(cells=20, steps=1020)  # 8.5 h of samples: one shift complete
    state = tmp_path / "state"
    pipeline = pipeline_for(tmp_path, plant_broker, influx)
    pipeline.start()  # the broker now keeps cellmon's session
    kill_group(pipeline)
    publisher = Publisher(plant_broker.port, stream.messages(), rate_hz=600)
    publisher.start()
    schedule = random.Random(KILL_SEED)
    for _ in range(KILLS):
        time.sleep(1.0)  # down: the broker queues a backlog of some 600 messages
        at_broker, before = publisher.acknowledged(), accepted_so_far(state)
        pipeline.launch()  # the kill below may come before it has even subscribed
        # a seeded point inside the backlog; one commit group may hold all of it (a read of
        # the MQTT 5 client brings hundreds), so what is outstanding is counted at the kill
        more = min(schedule.randint(1, 500), (at_broker - before) // 2)
        accepted = kill_after(pipeline, state, before + more)
        assert accepted < publisher.acknowledged()  # killed with messages outstanding
        assert publisher.is_alive()  # and while the controllers publish
    pipeline.start()
    publisher.finish()
    wait_for(lambda: arrived(influx, "plant", stream), 120, pipeline.new_log)
    assert pipeline.terminate() == 0
    assert_exactly_published(influx, "plant", state, stream)


def test_a_minute_without_the_database_under_load_loses_and_doubles_nothing(
    tmp_path: Path, plant_broker: Mosquitto, influx: InfluxV1
) -> None:
    """InfluxDB stopped for 60 s while the controllers keep publishing, then started.

    The output waits in the journal and goes out oldest first once the database is back;
    the writes that failed are counted, and nothing is written twice or lost.
    """
    stream = Stream(cells=3, steps=1020)
    pipeline = pipeline_for(tmp_path, plant_broker, influx)
    pipeline.start()
    publisher = Publisher(plant_broker.port, stream.messages(), rate_hz=42)
    publisher.start()
    wait_for(lambda: len(stored_rows(influx, "plant")) > 0, 60, pipeline.new_log)
    influx.stop()
    time.sleep(OUTAGE_S)  # the fault's duration, not a wait for a result
    assert publisher.is_alive()  # the whole outage was under load
    influx.start()
    publisher.finish()
    wait_for(lambda: arrived(influx, "plant", stream), 120, pipeline.new_log)
    assert pipeline.terminate() == 0
    assert "write failed" in pipeline.new_log()
    assert counters(tmp_path / "state")["write_errors"] >= 1
    assert_exactly_published(influx, "plant", tmp_path / "state", stream)


def test_a_broker_restart_under_load_loses_nothing(tmp_path: Path, influx: InfluxV1) -> None:
    """Mosquitto stopped and started again with its persistence while messages flow.

    cellmon is paused (SIGSTOP) over the restart, so that the broker certainly holds
    messages for its session when it stops: they survive in the broker's persistence.
    cellmon and the publisher reconnect, the broker delivers the rest, and what was
    delivered twice is counted as a duplicate, never stored twice.
    """
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=PLANT_BROKER_SETTINGS)
    broker.start()
    state = tmp_path / "state"
    try:
        stream = Stream(cells=3, steps=600)
        pipeline = pipeline_for(tmp_path, broker, influx)
        pipeline.start()
        publisher = Publisher(broker.port, stream.messages(), rate_hz=90)
        publisher.start()
        wait_for(lambda: accepted_so_far(state) > 300, 60, pipeline.new_log)
        restart_while_paused(broker, pipeline, publisher)
        wait_for(lambda: pipeline.new_log().count("connected to") >= 2, 60, pipeline.new_log)
        assert publisher.is_alive()  # the restart happened under load
        publisher.finish()
        wait_for(lambda: arrived(influx, "plant", stream), 120, pipeline.new_log)
        assert pipeline.terminate() == 0
    finally:
        broker.stop()
    assert_exactly_published(influx, "plant", state, stream)


def restart_while_paused(broker: Mosquitto, pipeline: Pipeline, publisher: Publisher) -> None:
    """Restart the broker while it holds at least 100 messages cellmon has not taken."""
    assert pipeline.proc is not None
    state = pipeline.config.parent / "state"

    def held() -> int:
        return publisher.acknowledged() - accepted_so_far(state)

    os.killpg(pipeline.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: held() >= 100, 30, lambda: f"{held()} held")
        broker.stop()
        broker.start()
    finally:
        os.killpg(pipeline.proc.pid, signal.SIGCONT)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs for the state directory, so that a test can fill it."""
    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the state directory needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on the state directory: {mounted.stderr.strip()}")
    try:
        yield state
    finally:
        kill_leftovers()  # a pipeline a failed test left running keeps the mount busy
        subprocess.run(["umount", str(state)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until its filesystem has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 1):  # big blocks, then the last bytes
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise


def logs(pipeline: Pipeline, text: str) -> Callable[[], bool]:
    """A condition: ``text`` is in what this run of the pipeline has logged."""
    return lambda: text in pipeline.new_log()


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_a_full_disk_stops_progress_with_a_clear_error_and_resumes_once_freed(
    tmp_path: Path, small_disk: Path, plant_broker: Mosquitto, influx: InfluxV1
) -> None:
    """The state directory's filesystem filled while the controllers publish.

    Commits fail with SQLite's "database or disk is full", logged; nothing is
    acknowledged that is not committed, so the broker keeps the messages. Once the
    filler is deleted, every message arrives, and the journal files are intact.
    """
    stream = Stream(cells=3, steps=600)
    pipeline = pipeline_for(tmp_path, plant_broker, influx)
    pipeline.start()
    publisher = Publisher(plant_broker.port, stream.messages(), rate_hz=90)
    publisher.start()
    wait_for(lambda: len(stored_rows(influx, "plant")) > 300, 60, pipeline.new_log)
    filler = small_disk / "filler"
    fill(filler)
    for says in ("journal commit failed; retrying", "database or disk is full"):
        wait_for(logs(pipeline, says), 60, pipeline.new_log)
    assert publisher.is_alive()  # the disk filled up under load
    filler.unlink()
    publisher.finish()
    wait_for(lambda: arrived(influx, "plant", stream), 120, pipeline.new_log)
    assert pipeline.terminate() == 0
    for name in ("inbox.sqlite", "journal.sqlite"):
        assert integrity(small_disk / name) == "ok"
    assert_exactly_published(influx, "plant", small_disk, stream)


def garbage_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 25)


def truncate_mid_file(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize(
    ("name", "damage"),
    [("journal.sqlite", garbage_header), ("inbox.sqlite", truncate_mid_file)],
    ids=["journal with a garbage header", "inbox truncated"],
)
def test_a_damaged_journal_file_is_refused_with_what_to_do(
    tmp_path: Path,
    plant_broker: Mosquitto,
    influx: InfluxV1,
    name: str,
    damage: Callable[[Path], None],
) -> None:
    """A journal file SQLite cannot read stops ``cellmon run`` before it opens anything
    for writing: one line naming the file and the way out, exit 2, the file untouched.

    Starting anew over it would lose, without a word, the samples and KPI state it holds.
    """
    stream = Stream(cells=3, steps=200)
    pipeline = pipeline_for(tmp_path, plant_broker, influx)
    pipeline.start()
    publish_all(plant_broker.port, stream.messages())
    wait_for(lambda: arrived(influx, "plant", stream), 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    path = tmp_path / "state" / name
    damage(path)
    before = path.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "collector.commands.cli", "run", "--config", str(pipeline.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    [line] = (done.stdout + done.stderr).strip().splitlines()
    assert f"{path} is damaged" in line
    assert "Move it aside" in line
    assert "restore it from a backup" in line
    assert path.read_bytes() == before
