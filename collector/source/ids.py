"""What may be a potline or cell id, wherever one is read: a topic level or a payload's key.

The id becomes a topic level of the alerts and a tag of every point, so the same rule
holds for the ids that topics, mappings, Sparkplug names and replayed rows carry.
"""

from __future__ import annotations

LEVEL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_LEVEL_LEN = 32


def valid_level(level: str) -> bool:
    """Whether a string may be a potline or cell id: it becomes a tag and a topic level."""
    return 0 < len(level) <= MAX_LEVEL_LEN and LEVEL_CHARS.issuperset(level)
