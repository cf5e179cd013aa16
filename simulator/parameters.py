"""What a simulated potline is made of, and how its seed becomes random numbers.

Every random number is drawn from a numpy Generator keyed by the seed, the potline and the
block of time or of schedule it belongs to, never from a running state. So any window can be
generated on its own and equals the same window of a longer run: forty days of anode history
cost no telemetry, and telemetry generated in chunks equals telemetry generated in one go.
Draws are laid out cell-major, so adding cells leaves the existing cells unchanged. Keeping
the keying here, in one place, is what lets physics and schedules draw independently.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

KG_AL_PER_KA_H = 0.33557
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
S_PER_H = 3600.0
S_PER_DAY = 86400.0
AE_SLOTS_PER_DAY = 24
NOISE_BLOCK_STEPS = 256
TAP_BLOCK = 64
CHUNK_STEPS = 1024
DISTURBANCE_TIME_CONSTANTS = 10.0
AE_QUENCH_SHARE = 0.4
AE_NOISE_FACTOR = 10.0


class Stream(IntEnum):
    """Independent random streams; a value is part of the seed of every Generator."""

    LINE = 1
    CELLS = 2
    NOISE = 3
    ANODE = 4
    TAP = 5
    AE = 6
    EXCESS = 7
    SETTLE = 8


@dataclass(frozen=True)
class SimParams:
    """Physical parameters of the simulated potline; the defaults follow domain.md."""

    line_current_ka: float = 300.0
    current_drift_ka: float = 1.5
    current_noise_ka: float = 0.3
    cell_voltage_v: float = 4.20
    cell_offset_v: float = 0.10
    back_emf_v: float = 1.65
    voltage_swing_v: float = 0.015
    voltage_noise_v: float = 0.008
    bath_temp_c: float = 955.0
    bath_offset_c: float = 4.0
    bath_swing_c: float = 2.0
    bath_noise_c: float = 0.3
    noise_uohm: tuple[float, float] = (6.0, 12.0)
    noise_jitter: float = 0.2
    ae_rate_per_cell_day: float = 0.15
    ae_voltage_v: tuple[float, float] = (20.0, 50.0)
    ae_duration_s: tuple[float, float] = (60.0, 300.0)
    anodes_per_cell: int = 40
    cycle_days: float = 31.0
    cycle_jitter_days: float = 1.0
    block: str = "590"
    other_block: str = "560"
    other_block_share: float = 0.05
    butt_mm: float = 155.0
    butt_noise_mm: float = 8.0
    burn_mm_per_day: float = 14.0
    change_step_v: tuple[float, float] = (0.06, 0.15)
    change_decay_h: float = 1.5
    slow_settle_share: float = 0.15
    """Of anode changes: a new anode that takes current slowly (a poor setting, a cold block)."""
    slow_settle_factor: tuple[float, float] = (3.0, 4.5)
    """How many times longer their voltage takes to come down: hours, not an hour."""
    crews: str = "ABCD"
    """The crews that change anodes, one per 8-hour shift in turn (UTC)."""
    careless_crew: str = "D"
    """Its changes settle slowly twice as often: what the anode-change league should find."""
    excess_share: float = 0.05
    """Of cells: a persistent voltage excess (a worn cathode, a bad anode-to-cathode distance)."""
    excess_v: tuple[float, float] = (0.08, 0.16)
    change_chill_c: float = 3.0
    change_noise_uohm: float = 6.0
    tap_interval_h: tuple[float, float] = (24.0, 32.0)
    tap_jitter_h: float = 1.0
    current_efficiency: float = 0.93
    tap_error: float = 0.03

    def __post_init__(self) -> None:
        """Reject parameters that would break the schedules' assumptions."""
        checks = {
            "anodes_per_cell must be >= 1": self.anodes_per_cell >= 1,
            "cycle_jitter_days must be in [0, cycle_days)": (
                0 <= self.cycle_jitter_days < self.cycle_days
            ),
            "ae_rate_per_cell_day must be in [0, 24]": (
                0 <= self.ae_rate_per_cell_day <= AE_SLOTS_PER_DAY
            ),
            "ae_duration_s must be within (0, 3600)": (
                0 < self.ae_duration_s[0] <= self.ae_duration_s[1] < S_PER_H
            ),
            "tap_jitter_h must be below half the shortest tap interval": (
                0 <= 2 * self.tap_jitter_h < self.tap_interval_h[0]
            ),
            "other_block_share must be in [0, 1]": 0 <= self.other_block_share <= 1,
            "slow_settle_share must be in [0, 0.5]": 0 <= self.slow_settle_share <= 0.5,
            "crews must be named by distinct letters": len(set(self.crews)) == len(self.crews) > 0,
            "excess_share must be in [0, 1]": 0 <= self.excess_share <= 1,
            "line_current_ka must be > 0": self.line_current_ka > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))


class Seeds:
    """The random numbers of one potline: a Generator per stream and block index."""

    def __init__(self, seed: int, potline: str) -> None:
        self._key = (seed % 2**64, zlib.crc32(potline.encode()))

    def rng(self, stream: Stream, *index: int) -> np.random.Generator:
        """The Generator of ``stream`` for block ``index``; the same arguments, the same draws."""
        return np.random.default_rng([*self._key, stream, *map(_entropy, index)])


def _entropy(value: int) -> int:
    """Map any integer (a block index may be negative) to SeedSequence's unsigned entropy."""
    return value % 2**64


@dataclass(frozen=True)
class CellTraits:
    """Fixed properties of each cell, one entry per cell."""

    resistance_uohm: np.ndarray
    swing_v: np.ndarray
    swing_omega: np.ndarray
    swing_phase: np.ndarray
    bath_offset_c: np.ndarray
    bath_omega: np.ndarray
    bath_phase: np.ndarray
    noise_uohm: np.ndarray
    anode_phase_s: np.ndarray
    tap_period_s: np.ndarray
    tap_phase_s: np.ndarray

    @classmethod
    def draw(cls, seeds: Seeds, cells: int, p: SimParams) -> CellTraits:
        """Resistance set point from the voltage offset: U = E0 + R·I at nominal current.

        A few cells run persistently above the rest (``excess_share``): the cells a plant
        looks for first. Drawn from a stream of their own, so the other traits stay as they
        were before the excess existed.
        """
        u = seeds.rng(Stream.CELLS).random((cells, 11)).T
        x = seeds.rng(Stream.EXCESS).random((cells, 2)).T
        excess_v = np.where(x[0] < p.excess_share, between(x[1], p.excess_v), 0.0)
        target_v = p.cell_voltage_v + (2 * u[0] - 1) * p.cell_offset_v + excess_v
        tap_period_s = between(u[8], p.tap_interval_h) * S_PER_H
        low, high = np.log(p.noise_uohm)
        return cls(
            resistance_uohm=1000 * (target_v - p.back_emf_v) / p.line_current_ka,
            swing_v=u[1] * p.voltage_swing_v,
            swing_omega=2 * np.pi / (between(u[2], (6.0, 30.0)) * S_PER_H),
            swing_phase=2 * np.pi * u[3],
            bath_offset_c=(2 * u[4] - 1) * p.bath_offset_c,
            bath_omega=2 * np.pi / (between(u[5], (12.0, 48.0)) * S_PER_H),
            bath_phase=2 * np.pi * u[6],
            noise_uohm=np.exp(low + u[7] * (high - low)),
            anode_phase_s=u[9] * p.cycle_days * S_PER_DAY,
            tap_period_s=tap_period_s,
            tap_phase_s=u[10] * tap_period_s,
        )


def between(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Scale uniforms in [0, 1) to [low, high)."""
    return bounds[0] + u * (bounds[1] - bounds[0])
