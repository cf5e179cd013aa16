import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.engine.engine import Engine
from collector.journal import store as journal
from collector.journal.outbox import AlertQueue, Outbox
from collector.sinks.alerts import AlertFormat
from processors.model import Batch, Point

T = 1_709_251_200_000_000_000

# the config's defaults (metrics_interval_s, ingest.dedup_window_s)
ENGINE = {
    "instance": "test",
    "metrics_interval_s": 10.0,
    "dedup_window_s": 3600.0,
    "state_every_s": 0.0,
}


class Counting:
    """Counts samples; its state is the running count."""

    name = "counting"

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        total = (state or 0) + len(batch.samples)
        return total, [Point("seen", (), {"total": total}, T)]


class Failing:
    name = "failing"

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        msg = "a processor bug"
        raise ZeroDivisionError(msg)


def test_a_failing_processor_loses_its_batch_not_the_pipeline(tmp_path: Path) -> None:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    inbox.append([("P1", "C1", T + k, 4.2, 300.0, None, None) for k in range(3)], [], {})
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    engine = Engine(store, [Failing(), Counting()], **ENGINE)
    assert engine.step() == 3
    assert store.counters()["processor_errors"] == 1
    assert store.load_state("counting") == 3
    assert store.load_state("failing") is None
    body = Outbox(journal.connect_journal(tmp_path)).take(100).body
    assert body.count(b"cell,") == 3  # the raw samples are written all the same
    assert b"seen total=3i" in body


class Unwritable(journal.Store):
    """A journal whose disk refuses every commit (full, or gone)."""

    def commit(self, *args: Any, **kwargs: Any) -> None:
        msg = "disk I/O error"
        raise sqlite3.OperationalError(msg)


def test_a_journal_that_refuses_commits_does_not_hang_the_stop(tmp_path: Path) -> None:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    inbox.append([("P1", "C1", T, 4.2, 300.0, None, None)], [], {})
    store = Unwritable(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    engine = Engine(store, [Counting()], **ENGINE)
    stop = threading.Event()
    stop.set()
    engine.run(stop)  # returns after a few tries instead of retrying for ever
    assert store.position() == 0  # nothing was marked processed: the next start redoes it


class Doubling:
    """Adds ``twice`` = 2 × voltage to the raw points; counts batches in its state."""

    name = "derived"
    factor = 2.0

    def derive(self, sb: Any) -> list[dict[str, float] | None]:
        volts = sb.voltage_v.tolist()
        return [
            {**(e or {}), "twice": self.factor * v} for e, v in zip(sb.extra, volts, strict=True)
        ]

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        return (state or 0) + 1, []


class Tripling(Doubling):
    factor = 3.0


def test_replaced_processors_keep_their_state_and_the_others_are_untouched(
    tmp_path: Path,
) -> None:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    counting = Counting()
    engine = Engine(store, [Doubling(), counting], **ENGINE)
    inbox.append([("P1", "C1", T, 4.0, 300.0, None, None)], [], {})
    engine.step()
    engine.replace([Tripling()])
    inbox.append([("P1", "C1", T + 1, 5.0, 300.0, None, None)], [], {})
    engine.step()
    assert engine.processors[1] is counting
    assert store.load_state("derived") == 2  # the new one went on from the old one's state
    assert store.load_state("counting") == 2
    body = Outbox(journal.connect_journal(tmp_path)).take(100).body
    assert b"twice=8" in body  # 2 × 4.0 before the swap
    assert b"twice=15" in body  # 3 × 5.0 after it


class Alarming:
    """Raises an alarm on the first sample of each batch; says so as ``Alerting``."""

    name = "alarms"

    def alerts(self, points: list[Point]) -> list[Point]:
        return points

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        tags = (("potline", "P1"), ("cell", "C1"), ("rule", "hot"), ("severity", "critical"))
        t = int(batch.samples.ts_ns[0])
        return state, [Point("alarm", tags, {"state": "raised", "value": 5.0}, t)]


def test_alerts_are_committed_with_their_alarm_points_and_deleted_once_sent(
    tmp_path: Path,
) -> None:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    inbox.append([("P1", "C1", T, 4.2, 300.0, None, None)], [], {})
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    engine = Engine(store, [Alarming()], **ENGINE, alerts=AlertFormat("a/{cell}/{rule}"))
    engine.step()
    body = Outbox(journal.connect_journal(tmp_path)).take(100).body
    assert b"alarm,cell=C1,potline=P1,rule=hot,severity=critical" in body
    queue = AlertQueue(journal.connect_journal(tmp_path))
    ((first, topic, payload),) = queue.take(10)
    assert topic == "a/C1/hot"
    assert orjson.loads(payload) == {
        "ts": T // 1_000_000,
        "potline": "P1",
        "cell": "C1",
        "rule": "hot",
        "severity": "critical",
        "state": "raised",
        "value": 5.0,
    }
    queue.delete_upto(first, 1)
    assert queue.take(10) == []
    assert store.counters()["alerts_published"] == 1


class Unwriteable:
    """Emits a good point, one whose tag InfluxDB cannot carry and one whose value is no value."""

    name = "unwriteable"
    bad = Point("anode", (("block", "590\\"),), {"x": 1.0}, T)
    broken = Point("anode", (), {"x": [1.0]}, T)  # type: ignore[dict-item]  # the point: unencodable

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        return state, [Point("anode", (("block", "590"),), {"x": 1.0}, T), self.bad, self.broken]


def test_what_cannot_be_encoded_is_counted_and_kept_and_the_rest_committed(
    tmp_path: Path,
) -> None:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    inbox.append(
        [
            ("P1", "C1", T, 4.2, 300.0, None, None),
            ("P1", "C1", T + 1, 4.2, 300.0, {"x\\": 1.5}, None),  # a key that ends with a backslash
            ("P1", "C1\\", T + 2, 4.2, 300.0, None, None),  # a cell name that does
            ("P1", "C1", T + 3, 4.3, 300.0, {"ok": 2.5}, None),
        ],
        [],
        {},
    )
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    rejected = tmp_path / "rejected.lp"
    engine = Engine(store, [Unwriteable()], **ENGINE, rejected_path=rejected)

    assert engine.step() == 4
    assert engine.step() == 0  # nothing is retried
    assert store.counters()["unencodable"] == 4
    assert store.position() == 4
    body = Outbox(journal.connect_journal(tmp_path)).take(100).body
    assert body.splitlines() == [
        f"cell,cell=C1,potline=P1 voltage_v=4.2,current_ka=300.0 {T}".encode(),
        f"cell,cell=C1,potline=P1 voltage_v=4.3,current_ka=300.0,ok=2.5 {T + 3}".encode(),
        f"anode,block=590 x=1.0 {T}".encode(),
    ]
    kept = rejected.read_text().splitlines()
    assert len(kept) == 8
    assert all(line.startswith("# unencodable: ") for line in kept[::2])
    assert all(line.startswith("# ") for line in kept[1::2])
    reprs = "\n".join(kept[1::2])
    assert repr({"x\\": 1.5}) in reprs
    assert repr("C1\\") in reprs
    assert repr(Unwriteable.bad) in reprs
    assert repr(Unwriteable.broken) in reprs


@pytest.mark.parametrize("batch_rows", [5000, 4, 1])
def test_a_clock_that_jumps_back_is_timed_by_its_late_samples_and_pages(
    tmp_path: Path, batch_rows: int
) -> None:
    # contract 6.5: C1 sends live single objects every 10 s from T (a minute's start), each
    # arriving 0.1 s after its ts (a lag of 100 ms); then its clock jumps 95 s back:
    # stamps T − 35 … T + 25 s, all before its newest (T + 50 s), so late and counted by no
    # KPI, but their arrivals (T + 60 … T + 120 s, a lag of 95 s) time the clock
    from processors.kpi.clock import ClockProcessor, ClockSettings

    s = 1_000_000_000
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    before = [("P1", "C1", T + k * 10 * s, 4.2, 300.0, None, 100) for k in range(6)]
    behind = [("P1", "C1", T + (k * 10 - 95) * s, 4.2, 300.0, None, 95_000) for k in range(6, 13)]
    inbox.append(before + behind, [], {})
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    clock = ClockProcessor(ClockSettings({"P1": 30.0}))
    engine = Engine(
        store, [clock], **ENGINE, alerts=AlertFormat("a/{cell}/{rule}"), batch_rows=batch_rows
    )
    assert sum(iter(engine.step, 0)) == 13  # the same points however the inbox is cut
    chunk = Outbox(journal.connect_journal(tmp_path)).take(1000)
    assert chunk is not None
    written = [
        line for line in chunk.body.decode().splitlines() if line.startswith(("cell_", "alarm"))
    ]
    m0, m1 = T, T + 60 * s  # T + 120 s, in the next minute, closes m1: 95 > 30 raises
    tags = "cell=C1,potline=P1"
    assert written == [
        f"cell_clock,{tags} offset_s=0.1,samples=6i {m0}",
        f"cell_clock,{tags} offset_s=95.0,samples=6i {m1}",
        f'alarm,{tags},rule=clock_drift,severity=warning state="raised",value=95.0 {m1}',
    ]
    assert [topic for _, topic, _ in AlertQueue(journal.connect_journal(tmp_path)).take(10)] == [
        "a/C1/clock_drift"
    ]
    assert store.counters()["late"] == 7
