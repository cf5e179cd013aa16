"""Reading a dead-letter store: its letters, where they are, and the filters of the commands.

Shared by ``cellmon deadletter list`` and ``replay``, which must select the same letters
from the same options.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from collector.build import DEAD_LETTER_FILE
from collector.config.models import Config

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Letter:
    """One line of a store: where it is (to rewrite it) and what it says."""

    index: int
    entry: dict[str, object]
    time: datetime | None


def parse_since(text: str, now: datetime) -> datetime:
    """``2h`` (s, m, h or d, before ``now``) or an ISO 8601 time, UTC when it has no offset.

    UTC because the letters' own times are; a duration is what one types after a fix.
    """
    duration = _DURATION.fullmatch(text.strip())
    if duration:
        return now - timedelta(seconds=float(duration[1]) * _UNIT_S[duration[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{text!r} is neither an ISO time nor a duration such as 2h"
        raise ValueError(msg) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def stores(cfg: Config, shards: int | None) -> list[Path]:
    """The dead-letter file of each state directory the deployment has (a shard has its own)."""
    deployed = cfg.split(shards) if shards else cfg
    parts = [deployed.shard(s) for s in deployed.shards] if deployed.shards else [deployed]
    return [part.state_path / DEAD_LETTER_FILE for part in parts]


def letters(content: bytes) -> list[Letter]:
    """Every line of a store, oldest first; a line that is not an entry is kept as found."""
    out = []
    for k, line in enumerate(content.splitlines()):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            out.append(Letter(k, entry, _time(entry.get("time"))))
    return out


def _time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def select(
    found: Sequence[Letter], reasons: Sequence[str] | None, since: datetime | None
) -> list[Letter]:
    """The letters of these reasons (all if none), rejected at or after ``since``.

    A letter whose time cannot be read is shown only when no ``since`` is asked for.
    """
    return [
        letter
        for letter in found
        if (not reasons or letter.entry.get("reason") in reasons)
        and (since is None or (letter.time is not None and letter.time >= since))
    ]
