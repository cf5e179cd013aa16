"""Typed messages that flow between the collector and the processors.

Samples travel in columnar batches (``SampleBatch``) because the hot path handles them by
the hundred thousand; events are rare and stay as objects. An event keeps its decoded JSON
``data``, which the raw ``cell_event`` point writes as it came; the processors that need
the meaning of an anode change or a tap read it through the typed payloads, so that a key
is spelled, and a value converted, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the MQTT process builds no batch and loads no numpy (15 MiB resident)
    import numpy as np

FieldValue = float | int | bool | str
UNTIMED = -(2**63)
"""The ``arrival_ns`` of a sample that is not timed (the int64 minimum: no real instant)."""


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point: measurement, tags, fields and UTC time in nanoseconds."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, FieldValue]
    time_ns: int


OFFLINE = "offline"
"""The event type of a cell whose controller or gateway went offline (a Sparkplug death)."""


@dataclass(slots=True)
class Event:
    """A validated discrete event (anode change, metal tap or any other type)."""

    potline: str
    cell: str
    ts_ns: int
    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AnodeChange:
    """An ``anode_change`` event's payload: the position, its new block type, the butt, the crew."""

    anode: int
    block: str
    butt_mm: float | None = None
    crew: str | None = None

    @classmethod
    def of(cls, event: Event) -> AnodeChange:
        """The payload of an event the decoder validated (anode an integer ≥ 1, block text)."""
        data = event.data
        butt, crew = data.get("butt_mm"), data.get("crew")
        return cls(
            int(data["anode"]),
            str(data["block"]),
            None if butt is None else float(butt),
            None if crew is None else str(crew),
        )


@dataclass(frozen=True, slots=True)
class MetalTap:
    """A ``metal_tap`` event's payload: the metal tapped from the cell."""

    metal_kg: float

    @classmethod
    def of(cls, event: Event) -> MetalTap:
        """The payload of an event the decoder validated (metal_kg > 0)."""
        return cls(float(event.data["metal_kg"]))


@dataclass(slots=True)
class SampleBatch:
    """Samples in arrival order, as parallel columns.

    ``cell_id`` indexes ``cells`` (a list of ``(potline, cell)``) so that tags are
    formatted once per cell, not once per sample. ``arrival_ns`` is when each sample reached
    cellmon, ``UNTIMED`` for one whose arrival says nothing of its controller's clock (an
    object of an array, a replayed row; contract 6.5); None: no sample of the batch is timed.
    """

    cells: list[tuple[str, str]]
    cell_id: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    voltage_v: np.ndarray  # float64
    current_ka: np.ndarray  # float64
    extra: list[dict[str, float] | None]
    arrival_ns: np.ndarray | None = None  # int64
    by_cell: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    """The same samples' (cell_id, ts_ns, voltage_v, current_ka) sorted by cell, then time,
    when the batch's maker has them so (the database answers a cell at a time): the
    processors need that order, and sorting an hour of a potline again is a tenth of
    their time on it."""

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass(slots=True)
class Batch:
    """What a processor sees per step: in-order samples and the events of the same rows.

    ``timed``: when some live samples of the rows are late (at or before their cell's
    newest, so not in ``samples``), every live sample of the rows, late ones too, in arrival
    order; None when ``samples`` holds them all. A clock that jumps back makes only late
    samples until its stamps pass its newest again: they are what times it (contract 6.5).
    """

    samples: SampleBatch
    events: list[Event]
    timed: SampleBatch | None = None
