"""States in memory, checkpointed by interval: a crash processes the inbox since the last
checkpoint again, and counters and alerts still count and page once."""

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from collector.engine.engine import Engine
from collector.journal import store as journal
from collector.journal.outbox import AlertQueue, Outbox
from collector.sinks.alerts import AlertFormat
from processors.model import Batch, Point

T = 1_709_251_200_000_000_000
LAZY = {"instance": "test", "metrics_interval_s": 3600.0, "dedup_window_s": 3600.0}
"""An engine whose next checkpoint is a whole default interval away: never, in a test."""


class Total:
    """Sums voltages in a list it updates in place, as an ``InMemory`` processor does."""

    name = "total"

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        if not isinstance(state, list):
            state = [state or 0.0]  # a checkpoint, read into a new object
        state[0] += float(batch.samples.voltage_v.sum())
        return state, [Point("total", (), {"v": state[0]}, T)]

    def checkpoint(self, state: Any) -> Any:
        return state[0] if isinstance(state, list) else state


class Late:
    """Fails on its second batch only: a bug that a particular batch shows."""

    name = "late"

    def __init__(self) -> None:
        self.calls = 0

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        self.calls += 1
        if self.calls == 2:
            msg = "a processor bug"
            raise ZeroDivisionError(msg)
        return (state or 0) + len(batch.samples), []


class Hot:
    """Raises an alarm for every sample over 5 V."""

    name = "alarms"

    def alerts(self, points: list[Point]) -> list[Point]:
        return points

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        tags = (("potline", "P1"), ("cell", "C1"), ("rule", "hot"), ("severity", "critical"))
        sb = batch.samples
        hot = sb.ts_ns[sb.voltage_v > 5.0].tolist()
        return state, [Point("alarm", tags, {"state": "raised", "value": 9.0}, t) for t in hot]


def stores(tmp_path: Path) -> tuple[journal.Inbox, journal.Store]:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    return inbox, store


def append(inbox: journal.Inbox, volts: list[float], first: int = 0) -> None:
    samples = [("P1", "C1", T + first + k, v, 300.0, None, None) for k, v in enumerate(volts)]
    inbox.append(samples, [], {})


def test_between_checkpoints_the_output_is_written_and_the_state_is_not(tmp_path: Path) -> None:
    inbox, store = stores(tmp_path)
    engine = Engine(store, [Total()], **LAZY)
    append(inbox, [4.0, 4.5])
    assert engine.step() == 2
    assert b"total v=8.5" in Outbox(journal.connect_journal(tmp_path)).take(100).body
    assert store.position() == 0
    assert store.load_state("total") is None
    engine.finish()
    assert store.position() == 2
    assert store.load_state("total") == 8.5


def test_a_crash_between_checkpoints_redoes_the_rows_since_and_counts_them_once(
    tmp_path: Path,
) -> None:
    inbox, store = stores(tmp_path)
    engine = Engine(store, [Total()], **{**LAZY, "state_every_s": 0.0})
    append(inbox, [4.0, 4.0])
    engine.step()  # checkpointed: 8 V, two rows
    engine = Engine(store, [Total()], **LAZY)
    append(inbox, [4.0, 4.0, 4.0], first=10)
    append(inbox, [4.0], first=5)  # late: older than the cell's newest sample
    engine.step()
    del engine  # killed: neither its state (20 V) nor its late count was committed
    assert "late" not in store.counters()
    restarted = Engine(store, [Total()], **LAZY)
    assert restarted.step() == 4  # the rows since the checkpoint again
    restarted.finish()
    assert store.load_state("total") == 8.0 + 12.0  # the late sample is not integrated
    assert store.counters()["late"] == 1


def test_an_alert_is_committed_once_at_once_and_not_again_after_a_crash(tmp_path: Path) -> None:
    inbox, store = stores(tmp_path)
    alerts = AlertFormat("a/{cell}/{rule}")
    engine = Engine(store, [Hot()], **LAZY, alerts=alerts)
    append(inbox, [4.0, 9.0])
    engine.step()
    assert store.position() == 2  # an alarm that pages checkpoints the batch at once
    append(inbox, [4.0], first=2)
    engine.step()
    del engine
    Engine(store, [Hot()], **LAZY, alerts=alerts).finish()
    queue = AlertQueue(journal.connect_journal(tmp_path))
    assert [topic for _, topic, _ in queue.take(10)] == ["a/C1/hot"]


def test_a_failing_processor_goes_on_from_its_checkpoint_and_the_batches_since(
    tmp_path: Path,
) -> None:
    inbox, store = stores(tmp_path)
    late = Late()
    engine = Engine(store, [late, Total()], **LAZY)
    append(inbox, [4.0, 4.0])
    engine.step()  # late: 2 samples, not yet checkpointed
    append(inbox, [4.0, 4.0, 4.0], first=2)
    engine.step()  # late fails: it loses these 3; redoing the first batch gives its 2 back
    append(inbox, [4.0], first=5)
    engine.step()
    engine.finish()
    assert store.load_state("late") == 2 + 1
    assert store.load_state("total") == 6 * 4.0
    assert store.counters()["processor_errors"] == 1


class Refusing(journal.Store):
    """A journal that refuses its second commit (a disk full for a moment)."""

    commits = 0

    def commit(self, *args: Any, **kwargs: Any) -> None:
        self.commits += 1
        if self.commits == 2:
            msg = "database or disk is full"
            raise sqlite3.OperationalError(msg)
        super().commit(*args, **kwargs)


def test_a_refused_commit_goes_back_to_the_checkpoint_and_loses_nothing(tmp_path: Path) -> None:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    store = Refusing(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    engine = Engine(store, [Total()], **LAZY)
    append(inbox, [4.0])
    engine.step()
    append(inbox, [5.0], first=1)
    with pytest.raises(sqlite3.OperationalError):
        engine.step()
    assert engine.step() == 2  # both rows again, from the (empty) checkpoint
    engine.finish()
    assert store.load_state("total") == 9.0
    body = Outbox(journal.connect_journal(tmp_path)).take(100).body
    assert b"total v=9" in body


def test_at_a_live_rate_the_interval_decides_and_a_quiet_inbox_checkpoints_within_5_s(
    tmp_path: Path,
) -> None:
    inbox, store = stores(tmp_path)
    now = [T]
    engine = Engine(store, [Total()], **{**LAZY, "state_every_s": 30.0}, clock=lambda: now[0])
    for k in range(10):  # a batch a second for 10 s, none of them full
        now[0] = T + k * 1_000_000_000
        append(inbox, [4.0], first=k)
        assert engine.step() == 1
    assert store.position() == 0  # 10 s of a 30 s interval: nothing checkpointed
    now[0] = T + 10_000_000_000  # gone quiet, 10 s after the last checkpoint (the start)
    assert engine.step() == 0
    assert (store.position(), store.load_state("total")) == (10, 40.0)
    append(inbox, [4.0], first=10)
    assert engine.step() == 1
    now[0] = T + 13_000_000_000  # quiet again, 3 s after that checkpoint: not yet
    assert engine.step() == 0
    assert store.position() == 10
    now[0] = T + 15_000_000_000  # 5 s after it
    assert engine.step() == 0
    assert (store.position(), store.load_state("total")) == (11, 44.0)
