"""Topic templates compiled once into matchers, and a per-topic cache of the result.

A plant has a few thousand topics and millions of messages, so the template match runs
once per topic string, not once per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.source.ids import valid_level

if TYPE_CHECKING:
    from collector.source.mapping import InputMapping

CACHE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Route:
    """Where a topic leads: the input kind, the cell it names and its payload layout."""

    kind: str
    potline: str
    cell: str
    mapping: InputMapping | None = None
    input: str = ""


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A template such as ``smelter/{potline}/{cell}/telemetry``, split into levels."""

    kind: str
    levels: tuple[str, ...]
    qos: int = 1
    mapping: InputMapping | None = None
    name: str = ""

    @property
    def subscription(self) -> str:
        """The MQTT filter that receives every topic the template can match."""
        return "/".join("+" if lv in ("{potline}", "{cell}") else lv for lv in self.levels)

    def subscriptions(self, potlines: frozenset[str]) -> list[str]:
        """The filters of the owned potlines only (contract 5.1).

        One per potline when the potline is a topic level, else the one filter (the payload
        names the potline, and the decoder counts other potlines' objects as foreign).
        """
        if "{potline}" not in self.levels:
            return [self.subscription]
        return [
            "/".join(
                p if lv == "{potline}" else "+" if lv == "{cell}" else lv for lv in self.levels
            )
            for p in sorted(potlines)
        ]

    def match(self, topic_levels: list[str]) -> Route | None:
        """Return the route for a topic, or None when it does not fit the template."""
        if len(topic_levels) != len(self.levels):
            return None
        potline = cell = ""
        for want, got in zip(self.levels, topic_levels, strict=True):
            if want == "{potline}":
                potline = got
            elif want == "{cell}":
                cell = got
            elif want != got:
                return None
        # a level the template names must be an id; one it lacks comes from the payload
        if "{potline}" in self.levels and not valid_level(potline):
            return None
        if "{cell}" in self.levels and not valid_level(cell):
            return None
        return Route(self.kind, potline, cell, self.mapping, self.name)


def compile_template(
    template: str,
    kind: str,
    qos: int = 1,
    mapping: InputMapping | None = None,
    name: str = "",
) -> TopicTemplate:
    """Compile a topic template; its validity is checked by the config loader."""
    levels = tuple(template.split("/"))
    return TopicTemplate(kind=kind, levels=levels, qos=qos, mapping=mapping, name=name)


class TopicRouter:
    """Routes topics to (kind, potline, cell), remembering every answer it gave.

    ``potlines`` are those the instance owns (contract 5.1): it subscribes to their topics
    only, and the decoder counts an object of any other potline as ``foreign``.
    """

    def __init__(self, templates: list[TopicTemplate], potlines: frozenset[str]) -> None:
        self.templates = templates
        self.potlines = potlines
        self._cache: dict[str, Route | None] = {}

    def subscriptions(self) -> dict[str, int]:
        """Every MQTT filter of the templates for the owned potlines, with its QoS."""
        return {f: t.qos for t in self.templates for f in t.subscriptions(self.potlines)}

    def route(self, topic: str) -> Route | None:
        """Return the route of a topic, or None when no template matches it."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        levels = topic.split("/")
        route = next((r for t in self.templates if (r := t.match(levels))), None)
        self._cache[topic] = route
        return route
