from pathlib import Path

import pytest

from collector import journal

T = 1_709_251_200_000_000_000


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite"


def test_duplicates_are_counted_and_skipped(path: Path) -> None:
    inbox = journal.Inbox(journal.connect(path))
    first = inbox.append([("P1", "C1", T, 4.2, 300.0, None), ("P1", "C2", T, 4.1, 300.0, None)], [])
    again = inbox.append(
        [("P1", "C1", T, 4.2, 300.0, None), ("P1", "C1", T + 1, 4.3, 300.0, {"x": 1.0})], []
    )
    assert (first.inserted, first.duplicates) == (2, 0)
    assert (again.inserted, again.duplicates) == (1, 1)
    rows = journal.Store(journal.connect(path)).read(0, 10)
    assert [(r[2], r[4]) for r in rows] == [(T, 4.2), (T, 4.1), (T + 1, 4.3)]


def test_two_anodes_changed_at_the_same_instant_are_two_events(path: Path) -> None:
    inbox = journal.Inbox(journal.connect(path))
    a = {"anode": 1, "block": "590"}
    b = {"anode": 2, "block": "590"}
    first = inbox.append(
        [], [("P1", "C1", T, "anode_change", a), ("P1", "C1", T, "anode_change", b)]
    )
    again = inbox.append([], [("P1", "C1", T, "anode_change", dict(a))])
    assert (first.inserted, again.inserted, again.duplicates) == (2, 0, 1)


def test_commit_is_atomic_and_survives_reopen(path: Path) -> None:
    journal.Inbox(journal.connect(path)).append([("P1", "C1", T, 4.2, 300.0, None)], [])
    store = journal.Store(journal.connect(path))
    store.commit(
        1, {"energy": {"P1/C1": 1.5}}, [(journal.RAW, 1, b"a 1\n"), (journal.KPI, 0, b"")], T
    )
    reopened = journal.Store(journal.connect(path))
    assert reopened.position() == 1
    assert reopened.load_state("energy") == {"P1/C1": 1.5}
    assert reopened.load_state("absent") is None
    assert reopened.read(1, 10) == []


def test_outbox_takes_oldest_first_and_drops_only_raw(path: Path) -> None:
    store = journal.Store(journal.connect(path))
    chunks = [(journal.RAW, 2, b"r1\nr2\n"), (journal.KPI, 1, b"k1\n"), (journal.RAW, 1, b"r3\n")]
    store.commit(0, {}, chunks, T)
    outbox = journal.Outbox(journal.connect(path))
    assert outbox.size() == (12, 4)  # 6 + 3 + 3 bytes
    first = outbox.take(max_lines=3)
    assert (first.lines, first.body) == (3, b"r1\nr2\nk1\n")
    assert outbox.drop_oldest_raw(max_bytes=3) == 3  # both raw rows go, the KPI row stays
    assert outbox.size() == (3, 1)
    outbox.delete_upto(first.last_id)
    assert outbox.take(10) is None
