"""Sparkplug B topics: ``spBv1.0/{group_id}/{message_type}/{edge_node_id}[/{device_id}]``.

And the primary host's ``spBv1.0/STATE/{host_id}`` (Sparkplug 3.0, section 4.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from collector.source.topics import CACHE_LIMIT

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"


class MessageType(StrEnum):
    """The message types; the ``D`` ones name a device of the edge node."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"


COMMANDS = frozenset((MessageType.NCMD, MessageType.DCMD))
"""Commands to edge nodes (a host's own rebirth requests among them): never input."""
READ = tuple(t for t in MessageType if t not in COMMANDS)
"""The message types a host application reads: births, deaths and data."""

DEVICE_TYPES = frozenset(
    (MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD)
)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed Sparkplug topic; ``device`` is None for a node's own messages."""

    group: str
    type: MessageType
    edge_node: str
    device: str | None = None

    def __str__(self) -> str:
        levels = [NAMESPACE, self.group, self.type.value, self.edge_node]
        return "/".join(levels if self.device is None else [*levels, self.device])


@lru_cache(maxsize=CACHE_LIMIT)
def parse(topic: str) -> Topic | None:
    """The topic's parts, or None for a topic that is not a Sparkplug B message topic.

    Cached like the JSON inputs' routes: a plant has a few thousand topics and millions
    of messages.
    """
    levels = topic.split("/")
    if len(levels) not in (4, 5) or levels[0] != NAMESPACE or not all(levels):
        return None
    try:
        kind = MessageType(levels[2])
    except ValueError:
        return None
    if (len(levels) == 5) != (kind in DEVICE_TYPES):
        return None
    return Topic(levels[1], kind, levels[3], levels[4] if len(levels) == 5 else None)


def is_state(topic: str) -> bool:
    """Whether the topic is a host application's STATE: not input, and no edge node's."""
    return topic.startswith(f"{NAMESPACE}/STATE/")


def state_topic(host_id: str) -> str:
    """Where a primary host application announces that it is online (retained)."""
    return f"{NAMESPACE}/STATE/{host_id}"
