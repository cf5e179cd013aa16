"""The line current: one series circuit through every cell, drifting slowly.

Both the cells' signals (``physics``) and the metal of each tap (``schedules``, Faraday's
production since the tap before) are made from it, so it sits below both; it is a sum of
sines so that its integral over any window is exact, however long.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.parameters import S_PER_H, SimParams


@dataclass(frozen=True)
class LineCurrent:
    """Slow drift of the line current: a few sines, so that its integral is exact."""

    base_ka: float
    amplitude_ka: np.ndarray
    omega: np.ndarray  # rad/s
    phase: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, params: SimParams) -> LineCurrent:
        """Periods of hours, a day or two and about a week, with random phases."""
        u = rng.random((3, 2))
        periods_h = np.array([[3.0, 9.0], [20.0, 60.0], [96.0, 288.0]])
        period_s = (periods_h[:, 0] + u[:, 0] * (periods_h[:, 1] - periods_h[:, 0])) * S_PER_H
        weights = np.array([0.2, 0.3, 0.5])
        return cls(
            base_ka=params.line_current_ka,
            amplitude_ka=weights * params.current_drift_ka,
            omega=2 * np.pi / period_s,
            phase=2 * np.pi * u[:, 1],
        )

    def value(self, t_s: np.ndarray) -> np.ndarray:
        """Noise-free current, kA."""
        angle = np.multiply.outer(t_s, self.omega) + self.phase
        current: np.ndarray = self.base_ka + np.sin(angle) @ self.amplitude_ka
        return current

    def integral_ka_h(self, t0_s: np.ndarray, t1_s: np.ndarray) -> np.ndarray:
        """∫ I dt from t0 to t1 of the noise-free current, kA·h."""
        cos0 = np.cos(np.multiply.outer(t0_s, self.omega) + self.phase)
        cos1 = np.cos(np.multiply.outer(t1_s, self.omega) + self.phase)
        drift = (cos0 - cos1) @ (self.amplitude_ka / self.omega)
        charge: np.ndarray = (self.base_ka * (t1_s - t0_s) + drift) / S_PER_H
        return charge
