"""The drain at shutdown: one deadline for a refusing database, however many passes."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from collector.journal import store as journal
from collector.journal.outbox import Outbox, write_state
from collector.sinks.base import SinkError
from collector.sinks.drain import JOURNAL_RETRY_S, Drain
from collector.sinks.options import FileOptions

T = 1_709_251_200_000_000_000
LINES = [f"cell,potline=P1,cell=C{c:02d} voltage_v=4.2 {T}\n".encode() for c in range(30)]


class FakeTime:
    """A monotonic clock that only moves when the drain sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Refusing:
    """A database that refuses every write as unavailable, until it is ``back``."""

    def __init__(self) -> None:
        self.tries = 0
        self.back = False
        self.written: list[bytes] = []

    def write(self, lines: bytes) -> None:
        self.tries += 1
        if not self.back:
            msg = "connection refused"
            raise SinkError(msg, retryable=True)
        self.written.append(lines)

    def close(self) -> None:
        pass


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    state = tmp_path / "state"
    store = journal.Store(journal.connect_inbox(state), journal.connect_journal(state))
    store.commit(1, {}, [(journal.RAW, len(LINES), b"".join(LINES))], T, {})
    return Outbox(journal.connect_journal(state))


def drain_of(outbox: Outbox, sink: Refusing, clock: FakeTime, tmp_path: Path) -> Drain:
    return Drain(
        outbox,
        sink,
        rejected_path=tmp_path / "rejected.lp",
        options=FileOptions(type="file", batch_lines=10, retry_max_s=30.0, shutdown_s=5.0),
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )


def stopped() -> threading.Event:
    finishing = threading.Event()
    finishing.set()
    return finishing


def test_a_refusing_database_gets_shutdown_s_and_the_points_stay(
    outbox: Outbox, tmp_path: Path
) -> None:
    clock, sink = FakeTime(), Refusing()
    drain_of(outbox, sink, clock, tmp_path).run(stopped())
    # backoff 0.5, 1, 2, then the 1.5 s left of the 5: a fifth try at the deadline, and out
    assert clock.now == 100.0 + 5.0
    assert sink.tries == 5
    assert outbox.size() == (len(b"".join(LINES)), len(LINES))


def test_a_second_pass_shares_the_deadline(outbox: Outbox, tmp_path: Path) -> None:
    clock, sink = FakeTime(), Refusing()
    drain = drain_of(outbox, sink, clock, tmp_path)
    finishing = stopped()
    drain.run(finishing)
    ended, tries = clock.now, sink.tries
    drain.run(finishing)
    assert (clock.now, sink.tries) == (ended, tries + 1)  # one more try, no second grace
    assert outbox.size()[1] == len(LINES)


def test_a_database_back_after_the_deadline_still_takes_everything(
    outbox: Outbox, tmp_path: Path
) -> None:
    clock, sink = FakeTime(), Refusing()
    drain = drain_of(outbox, sink, clock, tmp_path)
    finishing = stopped()
    drain.run(finishing)
    sink.back = True
    drain.run(finishing)
    assert b"".join(sink.written) == b"".join(LINES)
    assert outbox.size() == (0, 0)


class FullDisk(Outbox):
    """An outbox whose first deletion fails as SQLite does on a full disk."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox._conn)
        self.failed = False

    def delete_upto(self, last_id: int, lines: int) -> None:
        if not self.failed:
            self.failed = True
            msg = "database or disk is full"
            raise sqlite3.OperationalError(msg)
        super().delete_upto(last_id, lines)


def test_a_journal_error_is_waited_out_and_the_drain_carries_on(
    outbox: Outbox, tmp_path: Path
) -> None:
    clock, sink, full = FakeTime(), Refusing(), FullDisk(outbox)
    sink.back = True
    drain_of(full, sink, clock, tmp_path).run(stopped())
    assert full.failed
    assert clock.now == 100.0 + JOURNAL_RETRY_S
    # the chunk went out again after its deletion failed: written twice, buffered no more
    assert sink.written == [b"".join(LINES)] * 2
    assert outbox.size() == (0, 0)


def test_the_last_write_outcome_is_kept_in_the_journal_for_health(
    outbox: Outbox, tmp_path: Path
) -> None:
    reader = journal.connect_journal(tmp_path / "state")  # as the MQTT process reads it
    assert not write_state(reader).failing  # never written, never refused
    clock, sink = FakeTime(), Refusing()
    drain = drain_of(outbox, sink, clock, tmp_path)
    finishing = stopped()
    drain.run(finishing)
    refused = write_state(reader)
    assert refused.failing
    assert refused.failure == "connection refused"
    assert refused.wrote_ns == 0
    sink.back = True
    drain.run(finishing)
    taken = write_state(reader)
    assert not taken.failing
    assert taken.failed_ns == refused.failed_ns  # the refusal stays on record, older


class Picky(Refusing):
    """A database up, that refuses as invalid any write holding C07's line."""

    def write(self, lines: bytes) -> None:
        self.tries += 1
        if b"cell=C07 " in lines:
            msg = "unable to parse C07"
            raise SinkError(msg, retryable=False)
        self.written.append(lines)


def test_a_refused_chunk_is_bisected_down_to_the_invalid_line(
    outbox: Outbox, tmp_path: Path
) -> None:
    # the chunk goes out whole; only a refusal splits it into lines
    clock, sink = FakeTime(), Picky()
    drain_of(outbox, sink, clock, tmp_path).run(stopped())
    assert b"".join(sink.written) == b"".join(line for line in LINES if b"cell=C07 " not in line)
    assert sink.written[0] == b"".join(LINES[:7])  # the one 30-line row, halved twice
    assert (tmp_path / "rejected.lp").read_bytes() == b"# unable to parse C07\n" + LINES[7]
    assert outbox.size() == (0, 0)


def test_a_nudge_makes_what_the_outbox_holds_due_at_once(outbox: Outbox, tmp_path: Path) -> None:
    # 30 lines committed at T: under batch_lines (100) and 0.1 s old, of a 0.5 s flush
    now = [T + 100_000_000]
    sink = Refusing()
    sink.back = True
    drain = Drain(
        outbox,
        sink,
        rejected_path=tmp_path / "rejected.lp",
        options=FileOptions(type="file", batch_lines=100, flush_interval_s=0.5),
        clock=lambda: now[0],
    )
    assert drain.step() is False
    assert sink.written == []
    drain.nudge()  # the engine committed its batch's output
    assert drain.step() is True
    assert sink.written == [b"".join(LINES)]
    assert outbox.size() == (0, 0)
    state = tmp_path / "state"
    store = journal.Store(journal.connect_inbox(state), journal.connect_journal(state))
    store.commit(2, {}, [(journal.RAW, 1, LINES[0])], now[0] + 1, {})
    assert drain.step() is False  # committed after the nudge: young again
