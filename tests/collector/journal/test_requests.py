"""The recalculation requests table: filed, followed, finished, and read by another connection."""

from __future__ import annotations

from pathlib import Path

from collector.journal import store
from collector.journal.requests import Requests, Status


def test_a_request_is_pending_until_it_has_an_outcome(tmp_path: Path) -> None:
    command = Requests(store.connect_journal(tmp_path))
    worker = Requests(store.connect_journal(tmp_path))  # another process, in life
    first = command.submit({"targets": ["a"]}, now_ns=1)
    second = command.submit({"targets": ["b"]}, now_ns=2)
    assert worker.pending() == [(first, {"targets": ["a"]}), (second, {"targets": ["b"]})]
    worker.progress(first, 3, 10)
    assert command.status(first) == Status(3, 10, None)
    worker.finish(first, {"points": 12}, now_ns=5)
    assert command.status(first) == Status(3, 10, {"points": 12})
    assert worker.pending() == [(second, {"targets": ["b"]})]
