"""Events as points: every event in the raw ``cell_event`` measurement, taps in ``metal_tap``."""

from __future__ import annotations

from typing import Any

import orjson

from processors.model import Batch, FieldValue, MetalTap, Point


def _raw_fields(data: dict[str, Any]) -> dict[str, FieldValue]:
    """Numbers become floats so a field keeps one type across controllers and firmware."""
    fields: dict[str, FieldValue] = {}
    for key, value in data.items():
        if type(value) in (int, float):
            fields[key] = float(value)
        elif type(value) in (str, bool):
            fields[key] = value
        else:
            fields[key] = orjson.dumps(value).decode()
    return fields or {"seen": True}


class EventPoints:
    """Writes events as they come; stateless."""

    name = "events"

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """The raw event point of each event, plus a ``metal_tap`` point for each tap."""
        points = []
        for ev in batch.events:
            tags = (("potline", ev.potline), ("cell", ev.cell))
            fields = _raw_fields(ev.data)
            points.append(Point("cell_event", (*tags, ("type", ev.type)), fields, ev.ts_ns))
            if ev.type == "metal_tap":
                tap: dict[str, FieldValue] = {"metal_kg": MetalTap.of(ev).metal_kg}
                points.append(Point("metal_tap", tags, tap, ev.ts_ns))
        return state, points
