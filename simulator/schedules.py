"""When each cell's anodes are changed and its metal is tapped.

Plant schedules are periodic with jitter, so an event's time is a closed form of its slot
number plus that slot's own draws: any window of history, forty days back or one chunk of
a live run, is generated without walking the days before it. The draws of slot j and of
the slot a cycle earlier are both at hand, which is what sizes each butt and each tap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.line import LineCurrent
from simulator.parameters import (
    KG_AL_PER_KA_H,
    S_PER_DAY,
    S_PER_H,
    TAP_BLOCK,
    CellTraits,
    Seeds,
    SimParams,
    Stream,
    between,
)

SHIFT_MS = 8 * 3_600_000
"""Crews take turns by 8-hour shifts."""


def anode_sequence(anodes: int) -> list[int]:
    """Positions in the order they are changed, so neighbours are never new together.

    A stride coprime with the anode count visits every position once per cycle; a stride
    near a third of the count keeps consecutive changes far apart in the cell.
    """
    stride = max(1, anodes // 3)
    while math.gcd(stride, anodes) != 1:
        stride += 1
    return [(slot * stride) % anodes + 1 for slot in range(anodes)]


@dataclass(frozen=True)
class AnodeChanges:
    """Anode changes as parallel arrays, sorted by cell then nominal time."""

    cell: np.ndarray
    ts_ms: np.ndarray
    anode: np.ndarray
    other_block: np.ndarray
    butt_mm: np.ndarray
    step_v: np.ndarray
    decay_h: np.ndarray
    crew: np.ndarray


@dataclass(frozen=True)
class Taps:
    """Metal taps as parallel arrays."""

    cell: np.ndarray
    ts_ms: np.ndarray
    metal_kg: np.ndarray


class Schedules:
    """The anode changes and metal taps of all cells, at any window of time."""

    def __init__(
        self, seeds: Seeds, params: SimParams, traits: CellTraits, line: LineCurrent
    ) -> None:
        self.params = params
        self.cells = len(traits.anode_phase_s)
        self._seeds = seeds
        self._traits = traits
        self._line = line
        self._sequence = np.array(anode_sequence(params.anodes_per_cell))

    def anode_changes(self, t0_s: float, t1_s: float) -> AnodeChanges:
        """Changes with a time near ``[t0_s, t1_s)`` (callers filter exactly).

        Slot j of a cell is due at phase + j·cycle/anodes and changes position
        ``sequence[j mod anodes]``; its time is jittered by at most half of
        ``cycle_jitter_days`` either way, so each achieved cycle is within the jitter.
        """
        p, cells = self.params, self.cells
        anodes = p.anodes_per_cell
        cycle_s = p.cycle_days * S_PER_DAY
        jitter_s = p.cycle_jitter_days * S_PER_DAY
        spacing_s = cycle_s / anodes
        j = np.arange(
            math.floor((t0_s - jitter_s - cycle_s) / spacing_s),
            math.ceil((t1_s + jitter_s) / spacing_s) + 1,
        )
        this, prev = self._anode_draws(j, anodes)
        slow = self._settle_draws(j, anodes)
        nominal_s = self._traits.anode_phase_s[:, None] + j * spacing_s
        due_s = nominal_s + (this[..., 0] - 0.5) * jitter_s
        prev_due_s = nominal_s - cycle_s + (prev[..., 0] - 0.5) * jitter_s
        achieved_days = (due_s - prev_due_s) / S_PER_DAY
        ts_ms = np.round(due_s * 1000).astype(np.int64)
        crew = np.array(list(p.crews))[(ts_ms // SHIFT_MS) % len(p.crews)]
        slow_share = np.where(crew == p.careless_crew, 2.0, 1.0) * p.slow_settle_share
        keep = (due_s >= t0_s - 1.0) & (due_s < t1_s + 1.0)
        butt = (
            p.butt_mm
            + p.burn_mm_per_day * (p.cycle_days - achieved_days)
            + (2 * this[..., 2] - 1) * p.butt_noise_mm
        )
        return AnodeChanges(
            cell=np.broadcast_to(np.arange(cells)[:, None], keep.shape)[keep],
            ts_ms=ts_ms[keep],
            anode=np.broadcast_to(self._sequence[j % anodes], keep.shape)[keep],
            other_block=(this[..., 1] < p.other_block_share)[keep],
            butt_mm=np.round(butt[keep]).astype(np.int64),
            step_v=between(this[..., 3], p.change_step_v)[keep],
            decay_h=p.change_decay_h
            * np.where(slow[..., 0] < slow_share, between(slow[..., 1], p.slow_settle_factor), 1.0)[
                keep
            ],
            crew=crew[keep],
        )

    def _anode_draws(self, j: np.ndarray, anodes: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniforms ``(cells, len(j), 4)`` of slots j and of the same slots a cycle earlier."""
        pick = self._slot_draws(Stream.ANODE, j, anodes, 4)
        return pick(j), pick(j - anodes)

    def _settle_draws(self, j: np.ndarray, anodes: int) -> np.ndarray:
        """Uniforms ``(cells, len(j), 2)`` of slots j: is the change slow to settle, how slow.

        A stream of their own, so that every other draw of a change stays as it was.
        """
        return self._slot_draws(Stream.SETTLE, j, anodes, 2)(j)

    def _slot_draws(
        self, stream: Stream, j: np.ndarray, anodes: int, k: int
    ) -> Callable[[np.ndarray], np.ndarray]:
        """A picker of ``k`` uniforms per cell and slot, for slots from a cycle before j on."""
        first_cycle = int(j[0] - anodes) // anodes
        cells = self.cells
        draws = np.stack(
            [
                self._seeds.rng(stream, cycle).random((cells, anodes, k))
                for cycle in range(first_cycle, int(j[-1]) // anodes + 1)
            ]
        )
        cell_index = np.arange(cells)[:, None]

        def pick(slots: np.ndarray) -> np.ndarray:
            picked: np.ndarray = draws[slots // anodes - first_cycle, cell_index, slots % anodes]
            return picked

        return pick

    def taps(self, t0_s: float, t1_s: float) -> Taps:
        """Taps of all cells with a time near ``[t0_s, t1_s)`` (callers filter exactly)."""
        per_cell = [self._cell_taps(cell, t0_s, t1_s) for cell in range(self.cells)]
        return Taps(
            cell=np.concatenate([np.full(len(ts), cell) for cell, (ts, _) in enumerate(per_cell)]),
            ts_ms=np.concatenate([ts for ts, _ in per_cell]),
            metal_kg=np.concatenate([kg for _, kg in per_cell]),
        )

    def _cell_taps(self, cell: int, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Tap times (ms) and metal (kg) of one cell.

        Tap k is due at phase + k·period, jittered by at most ``tap_jitter_h``; its metal is
        the Faraday production since tap k-1 at the current efficiency, give or take the
        ``tap_error`` of a real tap (metal left in the pad, weighing).
        """
        p = self.params
        period_s = self._traits.tap_period_s[cell]
        phase_s = self._traits.tap_phase_s[cell]
        jitter_s = p.tap_jitter_h * S_PER_H
        k = np.arange(
            math.floor((t0_s - jitter_s - phase_s) / period_s),
            math.ceil((t1_s + jitter_s - phase_s) / period_s) + 1,
        )
        this, prev = self._tap_draws(cell, k)
        due_ms = np.round((phase_s + k * period_s + (2 * this[:, 0] - 1) * jitter_s) * 1000)
        prev_ms = np.round((phase_s + (k - 1) * period_s + (2 * prev[:, 0] - 1) * jitter_s) * 1000)
        produced_ka_h = self._line.integral_ka_h(prev_ms / 1000, due_ms / 1000)
        metal_kg = (
            KG_AL_PER_KA_H
            * produced_ka_h
            * p.current_efficiency
            * (1 + (2 * this[:, 1] - 1) * p.tap_error)
        )
        keep = (due_ms >= (t0_s - 1.0) * 1000) & (due_ms < (t1_s + 1.0) * 1000)
        return due_ms[keep].astype(np.int64), np.round(metal_kg[keep], 1)

    def _tap_draws(self, cell: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uniforms ``(len(k), 2)`` of taps k and k-1 of one cell."""
        first_block = int(k[0] - 1) // TAP_BLOCK
        draws = np.concatenate(
            [
                self._seeds.rng(Stream.TAP, cell, block).random((TAP_BLOCK, 2))
                for block in range(first_block, int(k[-1]) // TAP_BLOCK + 1)
            ]
        )
        offset = first_block * TAP_BLOCK
        return draws[k - offset], draws[k - 1 - offset]
