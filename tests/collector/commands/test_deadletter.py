"""``cellmon deadletter list`` and the filters it shares with ``replay``; what replay makes of
each letter (``plan``). Stores are written by hand, expected lines and counts too."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.build import decoder
from collector.commands.cli import build_parser, main
from collector.commands.deadletter import preview
from collector.commands.deadletter_replay import plan
from collector.commands.letters import Letter, letters, parse_since, select, stores
from collector.config.loader import load_config
from tests.harness import DEFAULT_RULES, write_config

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NS = 1_000_000_000
TOPIC = "smelter/P1/C2/telemetry"
FIXED_RULES = DEFAULT_RULES.replace(
    "    kind: telemetry\n", "    kind: telemetry\n    fields:\n      cell_voltage_v: volts\n", 1
)


def entry(time: str, reason: str, payload: str = "{}", **more: object) -> dict[str, object]:
    return {
        "time": time,
        "topic": TOPIC,
        "reason": reason,
        "detail": "x",
        "payload": payload,
        "truncated": False,
    } | more


def line(e: dict[str, object]) -> bytes:
    return json.dumps(e, separators=(",", ":")).encode() + b"\n"


STORE = [
    entry("2026-12-07T09:00:00+00:00", "missing_key"),
    entry("2026-12-07T11:00:00+00:00", "wrong_type"),
    entry("2026-12-07T11:30:00+00:00", "missing_key"),
]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("2026-12-07T10:00:00+08:00", datetime(2026, 12, 7, 2, 0, tzinfo=UTC)),
        ("2026-12-07T10:00", datetime(2026, 12, 7, 10, 0, tzinfo=UTC)),  # no offset: UTC
        ("2026-12-06", datetime(2026, 12, 6, tzinfo=UTC)),
    ],
)
def test_since_is_a_duration_ago_or_an_iso_time(text: str, want: datetime) -> None:
    assert parse_since(text, NOW) == want


@pytest.mark.parametrize("text", ["yesterday", "2w", "h", "-2h", "12/07/2026"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="neither an ISO time nor a duration"):
        parse_since(text, NOW)


def found() -> list[Letter]:
    return letters(b"".join(line(e) for e in STORE))


def test_letters_are_numbered_by_line_and_skip_what_is_no_entry() -> None:
    content = line(STORE[0]) + b"not json\n" + b"[1, 2]\n" + line(STORE[1])
    got = letters(content)
    assert [(x.index, x.entry["reason"]) for x in got] == [(0, "missing_key"), (3, "wrong_type")]
    assert got[0].time == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_select_by_reason_since_and_both() -> None:
    assert [x.index for x in select(found(), None, None)] == [0, 1, 2]
    assert [x.index for x in select(found(), ["missing_key"], None)] == [0, 2]
    assert [x.index for x in select(found(), ["missing_key", "wrong_type"], None)] == [0, 1, 2]
    since = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)  # at or after
    assert [x.index for x in select(found(), None, since)] == [1, 2]
    assert [x.index for x in select(found(), ["missing_key"], since)] == [2]
    local = datetime(2026, 12, 7, 19, 15, tzinfo=timezone(timedelta(hours=8)))  # 11:15 UTC
    assert [x.index for x in select(found(), None, local)] == [2]


def test_a_letter_without_a_readable_time_is_left_out_only_by_since() -> None:
    undated = letters(line(entry("sometime", "missing_key")))
    assert len(select(undated, None, None)) == 1
    assert select(undated, None, NOW - timedelta(days=365)) == []


def test_preview_is_one_line_cut_with_an_ellipsis() -> None:
    assert preview('{"ts": 1,\n "volts": 4.2}') == '{"ts": 1, "volts": 4.2}'
    assert preview("a" * 61) == "a" * 59 + "…"
    assert len(preview("a" * 61)) == 60
    assert preview("a" * 60) == "a" * 60


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, mqtt_port=1883, influx_url="http://127.0.0.1:1", database="x")
    (tmp_path / "state").mkdir()
    store = tmp_path / "state" / "deadletter.jsonl"
    store.write_bytes(b"".join(line(e) for e in STORE))
    return path


def test_list_prints_each_letter_and_a_count_by_reason(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deadletter", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"2026-12-07T09:00:00+00:00  {TOPIC}  missing_key  {{}}",
        f"2026-12-07T11:00:00+00:00  {TOPIC}  wrong_type  {{}}",
        f"2026-12-07T11:30:00+00:00  {TOPIC}  missing_key  {{}}",
        "3 dead letters: missing_key 2, wrong_type 1",
    ]


def test_list_filtered(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--config", str(config), "--reason", "missing_key", "--since", "2026-12-07T10:00Z"]
    assert main(["deadletter", "list", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"2026-12-07T11:30:00+00:00  {TOPIC}  missing_key  {{}}",
        "1 dead letter: missing_key 1",
    ]
    assert main(["deadletter", "list", "--config", str(config), "--reason", "bad_ts"]) == 0
    assert capsys.readouterr().out.splitlines() == ["0 dead letters"]


def test_list_of_a_bad_since_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deadletter", "list", "--config", str(config), "--since", "soon"]) == 2
    assert "--since: 'soon' is neither an ISO time nor a duration" in capsys.readouterr().err


def test_list_of_a_state_directory_without_letters(tmp_path: Path) -> None:
    path = write_config(tmp_path, mqtt_port=1883, influx_url="http://127.0.0.1:1", database="x")
    assert main(["deadletter", "list", "--config", str(path)]) == 0


def test_each_shard_has_its_own_store(tmp_path: Path) -> None:
    extra = "    - id: P2\n      baseline_sec_kwh_per_t: 13450\n"
    path = write_config(
        tmp_path, mqtt_port=1883, influx_url="http://127.0.0.1:1", database="x", extra=extra
    )
    cfg = load_config(path)
    state = tmp_path / "state"
    assert stores(cfg, None) == [state / "deadletter.jsonl"]
    assert stores(cfg, 2) == [state / "s1" / "deadletter.jsonl", state / "s2" / "deadletter.jsonl"]


def test_the_parser_has_list_and_replay() -> None:
    args = build_parser(["deadletter"]).parse_args(
        ["deadletter", "replay", "--reason", "a", "--reason", "b", "--since", "2h", "--quiet"]
    )
    assert (args.action, args.reason, args.since, args.quiet) == ("replay", ["a", "b"], "2h", True)


def test_replay_judges_each_letter_by_the_rules_now_in_force(tmp_path: Path) -> None:
    """Accepted: leaves; rejected the same way: the line stays byte for byte; rejected
    otherwise: the new reason; a payload not held whole: not replayed."""
    path = write_config(
        tmp_path,
        mqtt_port=1883,
        influx_url="http://127.0.0.1:1",
        database="x",
        rules=FIXED_RULES,
    )
    cfg = load_config(path)
    ts = 1_764_547_200_000  # 2025-12-01T00:00:00Z
    good = json.dumps({"ts": ts, "volts": 4.2, "line_current_ka": 300.0})
    text = json.dumps({"ts": ts + 1000, "volts": "4.2 V", "line_current_ka": 300.0})
    no_current = json.dumps({"ts": ts + 2000, "volts": 4.2})
    still = entry("t", "missing_key", no_current, detail="line_current_ka: required key is missing")
    store = [
        entry("t", "missing_key", good),
        entry("t", "missing_key", text),
        still,
        entry("t", "missing_key", good, truncated=True),
        entry("t", "not_utf8", good),
        entry("t", "bad_sparkplug", good, topic="spBv1.0/G/DDATA/E/D"),
    ]
    before = b"".join(line(e) for e in store)
    args = argparse.Namespace(reason=None)
    got = plan(tmp_path / "dl", before, decoder(cfg), args, None, 1_800_000_000 * NS, 4096)
    # not timed (no lag): a letter replayed is not a live sample (contract 6.5)
    assert got.samples == [("P1", "C2", ts * 1_000_000, 4.2, 300.0, None, None)]
    assert (got.accepted, dict(got.still), got.skipped) == (
        1,
        {"wrong_type": 1, "missing_key": 1},
        3,
    )
    new = json.loads(got.replaced[1][0])
    assert new == store[1] | {
        "reason": "wrong_type",
        "detail": "volts (as cell_voltage_v): expected a number, got '4.2 V'",
    }
    assert got.replaced == {0: [], 1: got.replaced[1]}  # line 2 is unchanged: not rewritten
