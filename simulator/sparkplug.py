"""Publish a simulated potline as Sparkplug B 3.0 edge gateways do (``--format sparkplug``).

The same potline as the JSON mode (same seed, same values), seen the way plants increasingly
wire their cells: the group is the potline, an edge node per section of cells (each its own
MQTT session), a device per cell. For testing a host application's side it can also lose
data messages (a seq gap), let devices die and be reborn, and answer rebirth requests.
See ``simulator.sparkplug_profile`` for the metrics and ``simulator.sparkplug_node`` for
the session rules.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass

from simulator.parameters import NS_PER_S
from simulator.payloads import PotlineSim
from simulator.publisher import Pacer
from simulator.sparkplug_node import EdgeNode, NodeOptions, SparkplugCounts

DEFAULT_SECTION_CELLS = 24


def node_id(potline: str, section: int) -> str:
    """The edge node id of a section, numbered from 1: ``P1-S01``."""
    return f"{potline}-S{section:02d}"


def sections(cell_ids: tuple[str, ...], section_cells: int) -> list[dict[str, int]]:
    """The cells of each section in order, each with its cell number (1-based, for aliases)."""
    numbered = {cell: i + 1 for i, cell in enumerate(cell_ids)}
    chunks = [cell_ids[i : i + section_cells] for i in range(0, len(cell_ids), section_cells)]
    return [{cell: numbered[cell] for cell in chunk} for chunk in chunks]


@dataclass(frozen=True)
class LineOptions:
    """How the potline is paced and cut into edge nodes, and how often a device dies.

    ``speed`` as in the JSON mode; ``death_every_s`` 0 means never.
    """

    speed: float = 0.0
    section_cells: int = DEFAULT_SECTION_CELLS
    death_every_s: float = 0.0

    def __post_init__(self) -> None:
        """Fail before connecting rather than halfway through a run."""
        if self.speed < 0 or self.section_cells < 1 or self.death_every_s < 0:
            msg = "speed must be >= 0, section_cells >= 1, death_every_s >= 0"
            raise ValueError(msg)


class Deaths:
    """Which device dies when: every ``every_s`` simulated seconds, the next cell in turn."""

    def __init__(self, cell_ids: tuple[str, ...], every_s: float, t0_ns: int) -> None:
        self._cells = cell_ids
        self._every_ns = round(every_s * NS_PER_S)
        self._due_ns = t0_ns + self._every_ns
        self._turn = 0

    def due(self, ts_ns: int) -> list[str]:
        """The cells whose death falls at or before ``ts_ns`` and was not yet handed out."""
        dying: list[str] = []
        while self._every_ns and ts_ns >= self._due_ns:
            dying.append(self._cells[self._turn % len(self._cells)])
            self._turn += 1
            self._due_ns += self._every_ns
        return dying


class Line:
    """The potline's edge nodes, connected once: ``stream`` publishes any number of spans.

    Use as a context manager: entering connects every node (births follow), leaving ends
    each session with its NDEATH.
    """

    def __init__(
        self, sim: PotlineSim, options: NodeOptions, line: LineOptions, t0_ns: int
    ) -> None:
        """``t0_ns``: where the first span starts, from which deaths are counted."""
        self.sim = sim
        self.counts = SparkplugCounts()
        self._deaths = Deaths(sim.cell_ids, line.death_every_s, t0_ns)
        self._nodes = [
            EdgeNode(sim.potline, name, cells, options, self.counts, client_id(options, name))
            for k, cells in enumerate(sections(sim.cell_ids, line.section_cells), start=1)
            for name in (node_id(sim.potline, k),)
        ]
        self._stack = ExitStack()

    def __enter__(self) -> Line:
        for node in self._nodes:
            self._stack.enter_context(node)
        for node in self._nodes:
            node.wait_for_host()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def stream(self, t0_ns: int, t1_ns: int, speed: float) -> None:
        """Publish ``[t0_ns, t1_ns)``, paced at ``speed`` as the JSON mode is."""
        _stream(self.sim, t0_ns, t1_ns, self._nodes, self._deaths, speed)


def publish(
    sim: PotlineSim,
    t0_ns: int,
    t1_ns: int,
    options: NodeOptions,
    line: LineOptions,
) -> SparkplugCounts:
    """Publish ``[t0_ns, t1_ns)`` from one edge node per section; return once acknowledged.

    Waits for the primary host first if ``options`` names one. Raises ConnectionError when
    the broker refuses a node, TimeoutError when it stops acknowledging.
    """
    with Line(sim, options, line, t0_ns) as nodes:
        nodes.stream(t0_ns, t1_ns, line.speed)
    return nodes.counts


def client_id(options: NodeOptions, name: str) -> str:
    """Each edge node is its own MQTT client: ``cellmon-sim-P1-S01-4242``."""
    return f"{options.client_prefix}-{name}-{os.getpid()}"


def _stream(
    sim: PotlineSim, t0_ns: int, t1_ns: int, nodes: list[EdgeNode], deaths: Deaths, speed: float
) -> None:
    """The JSON mode's records, each to the node of its cell, paced like the JSON mode."""
    owner = {cell: node for node in nodes for cell in node.cells}
    pacer = Pacer(speed, t0_ns)
    step_ns: int | None = None
    for record in sim.stream(t0_ns, t1_ns):
        pacer.wait_for(record.ts_ns)
        node = owner[record.cell]
        if record.kind == "event":
            node.event(record.cell, record.payload, record.ts_ns)
            continue
        if record.ts_ns != step_ns:
            step_ns = record.ts_ns
            for cell in deaths.due(step_ns):
                owner[cell].kill(cell)
        node.sample(record.cell, record.payload, record.ts_ns)
