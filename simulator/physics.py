"""How the cells' signals evolve around the events, kept apart from when the events happen.

The electrical and thermal models are the part one tunes to make the telemetry look like a
real line. They take the anode-change schedule as an input and never draw from its random
streams, so retuning them moves no event in time, and a long history of events costs none
of this work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from simulator.line import LineCurrent
from simulator.parameters import (
    AE_NOISE_FACTOR,
    AE_QUENCH_SHARE,
    AE_SLOTS_PER_DAY,
    DISTURBANCE_TIME_CONSTANTS,
    NOISE_BLOCK_STEPS,
    S_PER_DAY,
    S_PER_H,
    CellTraits,
    Seeds,
    SimParams,
    Stream,
    between,
)

if TYPE_CHECKING:
    from simulator.schedules import AnodeChanges


@dataclass(frozen=True)
class AnodeEffects:
    """Anode effects as parallel arrays."""

    cell: np.ndarray
    start_s: np.ndarray
    duration_s: np.ndarray
    peak_v: np.ndarray


class Signals(NamedTuple):
    """Unrounded telemetry: current ``(steps,)``, the others ``(steps, cells)``."""

    line_current_ka: np.ndarray
    cell_voltage_v: np.ndarray
    bath_temp_c: np.ndarray
    noise_uohm: np.ndarray


class CellPhysics:
    """The line current and the cells' voltage, bath temperature and noise at any times."""

    def __init__(self, seeds: Seeds, params: SimParams, traits: CellTraits) -> None:
        self.params = params
        self.traits = traits
        self.cells = len(traits.resistance_uohm)
        self._seeds = seeds
        self.line = LineCurrent.draw(seeds.rng(Stream.LINE), params)

    def signals(
        self,
        k0: int,
        t_s: np.ndarray,
        anode_changes: Callable[[float, float], AnodeChanges],
    ) -> Signals:
        """Telemetry of steps ``k0 ..`` at times ``t_s``; ``anode_changes`` gives the schedule."""
        p, tr = self.params, self.traits
        z_current, z_cells = self._noise(k0, len(t_s))
        current = self.line.value(t_s) + p.current_noise_ka * z_current
        step_v, decay = self._disturbance(t_s, anode_changes)
        voltage = (
            p.back_emf_v
            + np.multiply.outer(current, tr.resistance_uohm) / 1000
            + tr.swing_v * np.sin(np.multiply.outer(t_s, tr.swing_omega) + tr.swing_phase)
            + step_v
            + p.voltage_noise_v * z_cells[0]
        )
        bath = (
            p.bath_temp_c
            + tr.bath_offset_c
            + p.bath_swing_c * np.sin(np.multiply.outer(t_s, tr.bath_omega) + tr.bath_phase)
            - p.change_chill_c * decay
            + p.bath_noise_c * z_cells[1]
        )
        noise = tr.noise_uohm * np.exp(p.noise_jitter * z_cells[2]) + p.change_noise_uohm * decay
        self._apply_anode_effects(t_s, voltage, noise)
        return Signals(current, voltage, bath, noise)

    def _noise(self, k0: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Standard normals for steps k0..k0+n-1: current (n,), and (3, n, cells) per cell.

        Drawn per block of steps so that any range of steps gets the same numbers.
        """
        first_block = k0 // NOISE_BLOCK_STEPS
        last_block = max(first_block, (k0 + n - 1) // NOISE_BLOCK_STEPS)
        currents, per_cell = [], []
        for block in range(first_block, last_block + 1):
            rng = self._seeds.rng(Stream.NOISE, block)
            currents.append(rng.standard_normal(NOISE_BLOCK_STEPS))
            per_cell.append(rng.standard_normal((self.cells, 3, NOISE_BLOCK_STEPS)))
        skip = k0 - first_block * NOISE_BLOCK_STEPS
        z_current = np.concatenate(currents)[skip : skip + n]
        z_cells = np.concatenate(per_cell, axis=2)[:, :, skip : skip + n]
        return z_current, z_cells.transpose(1, 2, 0)

    def _disturbance(
        self, t_s: np.ndarray, anode_changes: Callable[[float, float], AnodeChanges]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Voltage step (V) and unit decay after each anode change, both (steps, cells).

        A new, cold anode takes current slowly: the voltage steps up and recovers with the
        change's own time constant (``change_decay_h``, longer for the slow ones); the
        cut-off is per sample, so chunks agree.
        """
        p = self.params
        horizon = DISTURBANCE_TIME_CONSTANTS * p.change_decay_h * p.slow_settle_factor[1] * S_PER_H
        shape = (len(t_s), self.cells)
        step_v, decay = np.zeros(shape), np.zeros(shape)
        if not len(t_s):
            return step_v, decay
        changes = anode_changes(t_s[0] - horizon, t_s[-1] + 1.0)
        for cell, ts_ms, amplitude, decay_h in zip(
            changes.cell, changes.ts_ms, changes.step_v, changes.decay_h, strict=True
        ):
            t_change, tau = ts_ms / 1000, decay_h * S_PER_H
            lo, hi = np.searchsorted(t_s, [t_change, t_change + DISTURBANCE_TIME_CONSTANTS * tau])
            unit = np.exp(-(t_s[lo:hi] - t_change) / tau)
            decay[lo:hi, cell] += unit
            step_v[lo:hi, cell] += amplitude * unit
        return step_v, decay

    def _apply_anode_effects(self, t_s: np.ndarray, voltage: np.ndarray, noise: np.ndarray) -> None:
        """Overwrite the samples during anode effects: the voltage jumps, then is quenched."""
        if not len(t_s):
            return
        effects = self.anode_effects(t_s[0], t_s[-1] + 1.0)
        for cell, start, duration, peak in zip(
            effects.cell, effects.start_s, effects.duration_s, effects.peak_v, strict=True
        ):
            lo, hi = np.searchsorted(t_s, [start, start + duration])
            elapsed = (t_s[lo:hi] - start) / duration
            voltage[lo:hi, cell] = peak * (1 - AE_QUENCH_SHARE * elapsed)
            noise[lo:hi, cell] *= AE_NOISE_FACTOR

    def anode_effects(self, t0_s: float, t1_s: float) -> AnodeEffects:
        """Anode effects overlapping ``[t0_s, t1_s)``.

        Each hour of a cell holds one effect with probability rate/24, fully inside the
        hour: a Poisson-like process whose effects never overlap.
        """
        p, cells = self.params, self.cells
        days = np.arange(math.floor((t0_s - S_PER_H) / S_PER_DAY), math.floor(t1_s / S_PER_DAY) + 1)
        u = np.stack(
            [
                self._seeds.rng(Stream.AE, day).random((cells, AE_SLOTS_PER_DAY, 4))
                for day in days.tolist()
            ],
            axis=1,
        )
        slot_start_s = np.add.outer(days * S_PER_DAY, np.arange(AE_SLOTS_PER_DAY) * S_PER_H)
        duration_s = between(u[..., 2], p.ae_duration_s)
        start_s = slot_start_s + u[..., 1] * (S_PER_H - duration_s)
        hit = (
            (u[..., 0] < p.ae_rate_per_cell_day / AE_SLOTS_PER_DAY)
            & (start_s < t1_s)
            & (start_s + duration_s > t0_s)
        )
        return AnodeEffects(
            cell=np.broadcast_to(np.arange(cells)[:, None, None], hit.shape)[hit],
            start_s=start_s[hit],
            duration_s=duration_s[hit],
            peak_v=between(u[..., 3], p.ae_voltage_v)[hit],
        )
