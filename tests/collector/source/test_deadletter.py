"""The dead-letter store: JSON lines of {time, topic, reason, detail, payload, truncated},
appended durably; expected entries are written out by hand."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.source.deadletter import (
    DeadLetters,
    StoreChanged,
    read_dead_letters,
    rewrite,
    snapshot,
)
from collector.source.decode import Rejection

NS = 1_000_000_000
T0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp()) * NS  # 2024-03-01T00:00:00Z
TOPIC = "cellmon/P1/C1/sample"


def rejection(payload: bytes, reason: str = "bad_json", detail: str = "x") -> Rejection:
    return Rejection(TOPIC, reason, detail, payload)


def store(path: Path, rejections: list[Rejection], now_ns: int = T0, **kw: int) -> None:
    dl = DeadLetters(path, kw.get("max_bytes", 4096))  # the config default
    dl.append(rejections, now_ns)
    dl.close()


def test_an_entry_has_time_topic_reason_detail_payload_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b'{"ts": 1', "bad_json", "unexpected end of data")])
    assert read_dead_letters(path) == [
        {
            "time": "2024-03-01T00:00:00+00:00",
            "topic": TOPIC,
            "reason": "bad_json",
            "detail": "unexpected end of data",
            "payload": '{"ts": 1',
            "truncated": False,
        }
    ]


def test_the_file_is_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b"a"), rejection(b"b")])
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 3
    assert lines[2] == b""
    assert lines[0].startswith(b"{")
    assert lines[0].endswith(b"}")


def test_time_is_the_iso_utc_time_of_now_ns(tmp_path: Path) -> None:
    # T0 + 1 day + 13 h 5 min 7.25 s → 2024-03-02T13:05:07.250000+00:00
    path = tmp_path / "dl.jsonl"
    now = T0 + (24 * 3600 + 13 * 3600 + 5 * 60 + 7) * NS + 250_000_000
    store(path, [rejection(b"{}")], now_ns=now)
    assert read_dead_letters(path)[0]["time"] == "2024-03-02T13:05:07.250000+00:00"


def test_a_payload_over_max_bytes_keeps_its_first_max_bytes(tmp_path: Path) -> None:
    # 5000 bytes: 4096 × "a" then 904 × "b"; the default max is 4096 bytes → the 4096 "a"
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b"a" * 4096 + b"b" * 904)])
    entry = read_dead_letters(path)[0]
    assert entry["payload"] == "a" * 4096
    assert entry["truncated"] is True


def test_a_payload_of_exactly_max_bytes_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b"a" * 4096)])
    entry = read_dead_letters(path)[0]
    assert entry["payload"] == "a" * 4096
    assert entry["truncated"] is False


def test_max_bytes_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b"0123456789abc")], max_bytes=10)
    entry = read_dead_letters(path)[0]
    assert entry["payload"] == "0123456789"
    assert entry["truncated"] is True


def test_invalid_utf8_bytes_are_replaced(tmp_path: Path) -> None:
    # 0xff and 0xfe never occur in UTF-8: each becomes U+FFFD; the rest is kept
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b'\xff{"v": 4.2}\xfe', "bad_utf8")])
    entry = read_dead_letters(path)[0]
    assert entry["payload"] == '\ufffd{"v": 4.2}\ufffd'
    assert entry["truncated"] is False


def test_a_cut_through_a_multibyte_character_is_replaced(tmp_path: Path) -> None:
    # "aé" is 61 c3 a9: cut at 2 bytes leaves 61 c3, an incomplete sequence → "a\ufffd"
    path = tmp_path / "dl.jsonl"
    store(path, [rejection("aé".encode())], max_bytes=2)
    entry = read_dead_letters(path)[0]
    assert entry["payload"] == "a\ufffd"
    assert entry["truncated"] is True


def test_valid_unicode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [rejection('{"cell": "电解槽 590"}'.encode())])
    assert read_dead_letters(path)[0]["payload"] == '{"cell": "电解槽 590"}'


def test_rejections_of_one_append_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b"1", "bad_json"), rejection(b"2", "bad_ts"), rejection(b"3")])
    entries = read_dead_letters(path)
    assert [(e["payload"], e["reason"]) for e in entries] == [
        ("1", "bad_json"),
        ("2", "bad_ts"),
        ("3", "bad_json"),
    ]


def test_a_reopened_store_appends_after_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [rejection(b"1"), rejection(b"2")], now_ns=T0)
    store(path, [rejection(b"3")], now_ns=T0 + NS)
    entries = read_dead_letters(path)
    assert [e["payload"] for e in entries] == ["1", "2", "3"]
    assert [e["time"] for e in entries] == [
        "2024-03-01T00:00:00+00:00",
        "2024-03-01T00:00:00+00:00",
        "2024-03-01T00:00:01+00:00",
    ]


def test_appends_are_on_disk_before_close(tmp_path: Path) -> None:
    # what append wrote is readable by another reader while the store is still open
    path = tmp_path / "dl.jsonl"
    dl = DeadLetters(path, 4096)
    dl.append([rejection(b"1")], T0)
    assert [e["payload"] for e in read_dead_letters(path)] == ["1"]
    dl.append([rejection(b"2")], T0)
    assert [e["payload"] for e in read_dead_letters(path)] == ["1", "2"]
    dl.close()


def test_an_empty_append_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    store(path, [])
    assert path.read_bytes() == b""
    assert read_dead_letters(path) == []


def test_the_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cellmon" / "dl.jsonl"
    store(path, [rejection(b"1")])
    assert [e["payload"] for e in read_dead_letters(path)] == ["1"]


def test_reading_a_missing_file_gives_no_entries(tmp_path: Path) -> None:
    assert read_dead_letters(tmp_path / "none.jsonl") == []


# ---- a rewrite while the service appends (cellmon deadletter replay beside cellmon run) ----


def _append_until(path: str, started: Any, stop: Any, count: Any) -> None:
    """The running service: one letter at a time, ``{"n": k}``, until told to stop."""
    letters = DeadLetters(Path(path), 4096)
    k = 0
    while not stop.is_set():
        letters.append([rejection(orjson.dumps({"n": k}), "live")], T0)
        k += 1
        if k == 5:
            started.set()
    letters.close()
    count.value = k


def test_a_rewrite_while_another_process_appends_loses_nothing(tmp_path: Path) -> None:
    """Each round removes the old letters or renames a reason, as ``deadletter replay`` does;
    every letter appended meanwhile, before, between and after the rounds, is there once."""
    path = tmp_path / "deadletter.jsonl"
    store(path, [rejection(b"old", "old")] * 20)
    ctx = multiprocessing.get_context("spawn")
    started, stop, count = ctx.Event(), ctx.Event(), ctx.Value("i", 0)
    child = ctx.Process(target=_append_until, args=(str(path), started, stop, count))
    child.start()
    try:
        assert started.wait(60)
        for _ in range(30):
            before = snapshot(path)
            replaced = {}
            for k, raw in enumerate(before.splitlines(keepends=True)):
                entry = orjson.loads(raw)
                if entry["reason"] == "old":
                    replaced[k] = []
                elif entry["reason"] == "live":
                    replaced[k] = [orjson.dumps(entry | {"reason": "seen"}) + b"\n"]
            rewrite(path, before, replaced)
    finally:
        stop.set()
        child.join(60)
    assert child.exitcode == 0
    entries = read_dead_letters(path)
    assert [e for e in entries if e["reason"] == "old"] == []
    numbers = sorted(orjson.loads(str(e["payload"]))["n"] for e in entries)
    assert numbers == list(range(count.value))


def test_a_rewrite_refuses_a_store_someone_else_rewrote(tmp_path: Path) -> None:
    path = tmp_path / "deadletter.jsonl"
    store(path, [rejection(b"a"), rejection(b"b")])
    before = snapshot(path)
    path.write_bytes(before.splitlines(keepends=True)[1])
    with pytest.raises(StoreChanged):
        rewrite(path, before, {0: []})
    assert read_dead_letters(path)[0]["payload"] == "b"
