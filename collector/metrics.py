"""Self-metrics: counted by stage and reason, written as the ``cellmon`` measurement.

Each counter is advanced by exactly one thread (the stage that owns it) and read by the
engine when it writes the point, so no lock is needed under the GIL.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from processors.model import FieldValue, Point


@dataclass
class Metrics:
    """Running totals since start; ``received == accepted + rejected + duplicates``.

    ``received`` counts objects (each element of an array payload, or one for a message
    that could not be parsed at all); ``messages`` counts MQTT messages.
    """

    messages: int = 0
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    late: int = 0
    written: int = 0
    write_errors: int = 0
    dropped: int = 0
    buffered: int = 0
    lag_s: float = 0.0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)

    def point(self, instance: str, now_ns: int) -> Point:
        """The ``cellmon`` point of this instant; per-reason rejections as ``rejected_<reason>``."""
        fields: dict[str, FieldValue] = {
            name: getattr(self, name)
            for name in (
                "messages",
                "received",
                "accepted",
                "rejected",
                "duplicates",
                "late",
                "written",
                "write_errors",
                "dropped",
                "buffered",
            )
        }
        fields["lag_s"] = float(self.lag_s)
        for reason, count in sorted(self.rejected_by_reason.items()):
            fields[f"rejected_{reason}"] = count
        return Point("cellmon", (("instance", instance),), fields, now_ns)
