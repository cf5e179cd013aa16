"""Self-metrics, written as the ``cellmon`` measurement.

The counters are kept in the journal files and advance in the same transactions as the
data they count (see ``collector.journal.store``), so they are exact and survive restarts: they
count since the state directory was created, like any monotonic counter. A ``Metrics`` is
a snapshot of them plus the two gauges.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from collector.journal import store as journal
from collector.journal.outbox import WriteState, write_state
from processors.model import FieldValue, Point

REJECTED_PREFIX = "rejected_"


@dataclass(frozen=True)
class Metrics:
    """Totals; ``received == accepted + rejected + duplicates``.

    ``received`` counts objects (each element of an array payload, or one for a message
    that could not be parsed at all); ``messages`` counts MQTT messages. ``foreign``
    objects, of a potline another instance owns (contract 5.1), are outside ``received``.
    """

    messages: int = 0
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    foreign: int = 0
    late: int = 0
    processor_errors: int = 0
    unencodable: int = 0
    written: int = 0
    write_errors: int = 0
    dropped: int = 0
    alerts_published: int = 0
    rules_reloads: int = 0
    rules_rejected: int = 0
    sparkplug_births: int = 0
    sparkplug_deaths: int = 0
    sparkplug_seq_gaps: int = 0
    sparkplug_lost: int = 0  # messages an edge node's sequence numbers say never came
    sparkplug_unknown_alias: int = 0
    sparkplug_rebirth_requests: int = 0
    buffered: int = 0
    lag_s: float = 0.0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_counters(cls, counters: Mapping[str, int], buffered: int, lag_s: float) -> Metrics:
        """A snapshot from the journal's counters and the outbox gauges."""
        names = {f.name for f in fields(cls)} - {"buffered", "lag_s", "rejected_by_reason"}
        reasons = {
            k.removeprefix(REJECTED_PREFIX): v
            for k, v in counters.items()
            if k.startswith(REJECTED_PREFIX)
        }
        return cls(
            **{k: counters.get(k, 0) for k in names},
            buffered=buffered,
            lag_s=lag_s,
            rejected_by_reason=reasons,
        )

    def point(self, instance: str, now_ns: int) -> Point:
        """The ``cellmon`` point of this instant; per-reason rejections as ``rejected_<reason>``."""
        values: dict[str, FieldValue] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "rejected_by_reason"
        }
        values["lag_s"] = float(self.lag_s)
        for reason, count in sorted(self.rejected_by_reason.items()):
            values[f"{REJECTED_PREFIX}{reason}"] = count
        return Point("cellmon", (("instance", instance),), values, now_ns)


@dataclass(frozen=True)
class Reading:
    """What the journal files say at one instant: the self-metrics and the last write."""

    metrics: Metrics
    write: WriteState


def read_metrics(state_dir: Path) -> Reading:
    """Read the counters, gauges and last write outcome beside the running pipeline.

    Its own connections, opened and closed here: SQLite's WAL lets this read while the
    MQTT thread and the worker commit, without waiting for them or making them wait.
    """
    inbox, conn = journal.connect_inbox(state_dir), journal.connect_journal(state_dir)
    try:
        counters = journal.read_counters(inbox) | journal.read_counters(conn)
        lines, oldest = journal.backlog(conn)
        write = write_state(conn)
    finally:
        inbox.close()
        conn.close()
    lag = max(0.0, (time.time_ns() - oldest) / 1e9) if oldest else 0.0
    return Reading(Metrics.from_counters(counters, lines, lag), write)
