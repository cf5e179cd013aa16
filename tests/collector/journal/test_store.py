from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from collector.journal import store as journal
from collector.journal.outbox import Outbox

T = 1_709_251_200_000_000_000


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def open_store(state: Path) -> journal.Store:
    return journal.Store(journal.connect_inbox(state), journal.connect_journal(state))


def sample(cell: str, ts: int, v: float = 4.2) -> tuple:
    return ("P1", cell, ts, v, 300.0, None, None)


def test_duplicates_are_counted_and_skipped(state: Path) -> None:
    inbox = journal.Inbox(journal.connect_inbox(state))
    first = inbox.append([sample("C1", T), sample("C2", T, 4.1)], [], {"messages": 2})
    again = inbox.append(
        [sample("C1", T), ("P1", "C1", T + 1, 4.3, 300.0, {"x": 1.0}, None)],
        [],
        {"messages": 1, "rejected": 1, "rejected_not_json": 1},
    )
    assert (first.inserted, first.duplicates) == (2, 0)
    assert (again.inserted, again.duplicates) == (1, 1)
    rows = open_store(state).read(0, 10)
    assert list(zip(rows.ts, rows.v, strict=True)) == [(T, 4.2), (T, 4.1), (T + 1, 4.3)]
    assert open_store(state).counters() == {
        "messages": 3,
        "received": 5,  # 4 objects and one unparseable message
        "accepted": 3,
        "duplicates": 1,
        "rejected": 1,
        "rejected_not_json": 1,
    }


def test_two_anodes_changed_at_the_same_instant_are_two_events(state: Path) -> None:
    inbox = journal.Inbox(journal.connect_inbox(state))
    a = {"anode": 1, "block": "590"}
    b = {"anode": 2, "block": "590"}
    changes = [("P1", "C1", T, "anode_change", a), ("P1", "C1", T, "anode_change", b)]
    first = inbox.append([], changes, {})
    again = inbox.append([], [("P1", "C1", T, "anode_change", dict(a))], {})
    assert (first.inserted, again.inserted, again.duplicates) == (2, 0, 1)


def test_commit_is_atomic_and_survives_reopen(state: Path) -> None:
    journal.Inbox(journal.connect_inbox(state)).append([sample("C1", T)], [], {})
    chunks = [(journal.RAW, 1, b"a 1\n"), (journal.KPI, 0, b"")]
    open_store(state).commit(1, {"energy": {"P1/C1": 1.5}}, chunks, T, {"late": 2})
    reopened = open_store(state)
    assert reopened.position() == 1
    assert reopened.load_state("energy") == {"P1/C1": 1.5}
    assert reopened.load_state("absent") is None
    assert reopened.read(1, 10).seq == ()
    assert reopened.counters()["late"] == 2
    assert reopened.backlog() == (1, T)


def test_a_state_in_parts_writes_only_those_that_changed(state: Path) -> None:
    """A ``Chunked`` processor's checkpoint: the main state and the parts that changed."""
    store = open_store(state)
    main = {"last": {"P1": {"C1": 7}}}
    store.commit(1, {"taps": main}, [], T, {}, parts={"taps": ({"a": [1.0], "b": [2.0]}, True)})
    store.commit(2, {"taps": main}, [], T, {}, parts={"taps": ({"b": [3.0], "a": None}, False)})
    store.commit(3, {"taps": main}, [], T, {}, parts={"taps": ({"c": [4.0]}, False)})
    assert open_store(state).load_state("taps") == {**main, "parts": {"b": [3.0], "c": [4.0]}}
    store.commit(4, {"taps": main}, [], T, {}, parts={"taps": ({"d": [5.0]}, True)})  # all
    assert open_store(state).load_state("taps") == {**main, "parts": {"d": [5.0]}}
    store.commit(5, {"other": 1}, [], T, {})  # a processor without parts is as before
    assert open_store(state).load_state("other") == 1


def test_outbox_takes_oldest_first_and_drops_only_raw(state: Path) -> None:
    chunks = [(journal.RAW, 2, b"r1\nr2\n"), (journal.KPI, 1, b"k1\n"), (journal.RAW, 1, b"r3\n")]
    open_store(state).commit(0, {}, chunks, T, {})
    outbox = Outbox(journal.connect_journal(state))
    assert outbox.size() == (12, 4)  # 6 + 3 + 3 bytes
    first = outbox.take(max_lines=3)
    assert (first.lines, first.body) == (3, b"r1\nr2\nk1\n")
    assert outbox.drop_oldest_raw(max_bytes=3) == 3  # both raw rows go, the KPI row stays
    assert outbox.size() == (3, 1)
    outbox.delete_upto(first.last_id, first.lines)
    assert outbox.take(10) is None
    assert open_store(state).counters() == {"dropped": 3, "written": 3}


def filled_inbox(state: Path) -> Path:
    """An inbox of a few hundred pages, closed (its WAL folded in), as a stop leaves it."""
    conn = journal.connect_inbox(state)
    inbox = journal.Inbox(conn)
    inbox.append([sample(f"C{c}", T + k) for k in range(2000) for c in range(5)], [], {})
    conn.close()
    return state / journal.INBOX_FILE


def test_sound_and_missing_files_pass_the_check(state: Path) -> None:
    journal.verify(state)  # a new state directory: nothing to check
    filled_inbox(state)
    journal.verify(state)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f, size: f.write(b"\xde\xad" * 50), "file is not a database"),
        (lambda f, size: f.truncate(size // 2), "malformed"),
        (lambda f, size: (f.seek(size // 8192 * 4096 + 100), f.write(b"\0" * 200)), "quick_check"),
    ],
    ids=["garbage header", "truncated", "a page overwritten"],
)
def test_a_damaged_file_is_named_and_never_opened_anew(
    state: Path, damage: Callable[[BinaryIO, int], object], problem: str
) -> None:
    path = filled_inbox(state)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        damage(f, size)
    before = path.read_bytes()
    with pytest.raises(journal.JournalDamaged, match=problem) as raised:
        journal.verify(state)
    assert raised.value.path == path
    assert str(path) in str(raised.value)
    assert "restore it from a backup" in str(raised.value)
    assert path.read_bytes() == before  # nothing written over what is left


def test_a_live_sample_keeps_its_lag_and_the_others_none(state: Path) -> None:
    inbox = journal.Inbox(journal.connect_inbox(state))
    live, flushed = ("P1", "C1", T, 4.2, 300.0, None, 90_000), sample("C1", T + 1)
    inbox.append([live, flushed], [("P1", "C1", T + 2, "metal_tap", {"metal_kg": 1.0})], {})
    rows = open_store(state).read(0, 10)
    assert rows.lag == (90_001, 0, 0)  # lag_code: 0 untimed, a lag ≥ 0 shifted by one
    assert [journal.lag_code(x) for x in (None, 0, 5, -5)] == [0, 1, 6, -5]


def test_an_inbox_of_an_earlier_version_gains_the_lag_column(state: Path) -> None:
    import sqlite3

    state.mkdir(parents=True)
    old = sqlite3.connect(state / journal.INBOX_FILE)
    old.executescript(
        "CREATE TABLE inbox (seq INTEGER PRIMARY KEY, cell_id INTEGER NOT NULL, "
        "ts INTEGER NOT NULL, dkey INTEGER NOT NULL, kind INTEGER NOT NULL, v REAL, i REAL, "
        "body BLOB, UNIQUE (ts, cell_id, dkey));"
        "INSERT INTO inbox (cell_id, ts, dkey, kind, v, i) VALUES (1, 5, 0, 0, 4.2, 300.0);"
    )
    old.commit()
    old.close()
    journal.Inbox(journal.connect_inbox(state)).append([sample("C1", T)], [], {})
    assert open_store(state).read(0, 10).lag == (0, 0)  # the old row: untimed
