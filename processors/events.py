"""Events as points: every event in the raw ``cell_event`` measurement, taps in ``metal_tap``."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from processors.model import Event, FieldValue, Point


def _raw_fields(data: dict[str, object]) -> dict[str, FieldValue]:
    """Numbers become floats so a field keeps one type across controllers and firmware."""
    fields: dict[str, FieldValue] = {}
    for key, value in data.items():
        if type(value) in (int, float):
            fields[key] = float(value)  # type: ignore[arg-type]
        elif type(value) in (str, bool):
            fields[key] = value  # type: ignore[assignment]
        else:
            fields[key] = orjson.dumps(value).decode()
    return fields or {"seen": True}


def event_points(events: Iterable[Event]) -> list[Point]:
    """The raw event point of each event, plus a ``metal_tap`` point for each tap."""
    points = []
    for ev in events:
        tags = (("potline", ev.potline), ("cell", ev.cell))
        points.append(
            Point("cell_event", (*tags, ("type", ev.type)), _raw_fields(ev.data), ev.ts_ns)
        )
        if ev.type == "metal_tap":
            points.append(
                Point("metal_tap", tags, {"metal_kg": float(ev.data["metal_kg"])}, ev.ts_ns)
            )
    return points
