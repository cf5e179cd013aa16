"""A deterministic simulated potline: telemetry and events in the contract's payload form.

Every random number is drawn from a numpy Generator keyed by the seed, the potline and the
block of time or of schedule it belongs to, never from a running state. So any window can be
generated on its own and equals the same window of a longer run: forty days of anode history
cost no telemetry, and telemetry generated in chunks equals telemetry generated in one go.
Draws are laid out cell-major, so adding cells leaves the existing cells unchanged.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson

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

Payload = dict[str, Any]


class _Stream(IntEnum):
    """Independent random streams; a value is part of the seed of every Generator."""

    LINE = 1
    CELLS = 2
    NOISE = 3
    ANODE = 4
    TAP = 5
    AE = 6


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
    change_step_v: tuple[float, float] = (0.02, 0.06)
    change_decay_h: float = 1.5
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
            "line_current_ka must be > 0": self.line_current_ka > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))


class SimEvent(NamedTuple):
    """One event of one cell, its payload in the contract's form."""

    ts_ns: int
    cell: str
    payload: Payload


class Step(NamedTuple):
    """The telemetry of all cells at one sample time, payloads in ``cell_ids`` order."""

    ts_ns: int
    payloads: list[Payload]


class Record(NamedTuple):
    """One object of the interleaved stream; ``kind`` names the topic it belongs to."""

    ts_ns: int
    cell: str
    kind: Literal["telemetry", "event"]
    payload: Payload


@dataclass(frozen=True)
class Columns:
    """Telemetry of ``len(ts_ns)`` steps × all cells, already rounded as in the payloads."""

    cells: tuple[str, ...]
    ts_ns: np.ndarray  # (steps,) int64
    line_current_ka: np.ndarray  # (steps,)
    cell_voltage_v: np.ndarray  # (steps, cells)
    bath_temp_c: np.ndarray  # (steps, cells)
    noise_uohm: np.ndarray  # (steps, cells)

    def __len__(self) -> int:
        return len(self.ts_ns)

    def payloads(self) -> list[list[Payload]]:
        """Payload objects indexed ``[step][cell]``."""
        ts_ms = (self.ts_ns // NS_PER_MS).tolist()
        current = self.line_current_ka.tolist()
        rows = zip(
            self.cell_voltage_v.tolist(),
            self.bath_temp_c.tolist(),
            self.noise_uohm.tolist(),
            strict=True,
        )
        return [
            [
                {
                    "ts": ts,
                    "cell_voltage_v": v,
                    "line_current_ka": i,
                    "bath_temp_c": b,
                    "noise_uohm": n,
                }
                for v, b, n in zip(volts, baths, noises, strict=True)
            ]
            for ts, i, (volts, baths, noises) in zip(ts_ms, current, rows, strict=True)
        ]

    def encode(self, array_size: int = 1) -> list[tuple[int, bytes]]:
        """``(cell index, JSON bytes)`` in publishing order.

        With ``array_size`` k > 1 each message is an array of k consecutive samples of one
        cell, as a controller flushing its buffer sends them; the last one may be shorter.
        """
        rows = self.payloads()
        if array_size == 1:
            return [(c, dumps(obj)) for row in rows for c, obj in enumerate(row)]
        messages: list[tuple[int, bytes]] = []
        for first in range(0, len(rows), array_size):
            block = rows[first : first + array_size]
            messages.extend((c, dumps([row[c] for row in block])) for c in range(len(self.cells)))
        return messages


def dumps(obj: Any) -> bytes:
    """JSON bytes of exactly their size.

    orjson hands back its over-allocated buffer shrunk in place; keeping hundreds of
    thousands of those fragments the heap and made encoding 15 times slower than a copy.
    """
    return bytes(memoryview(orjson.dumps(obj)))


def anode_sequence(anodes: int) -> list[int]:
    """Positions in the order they are changed, so neighbours are never new together.

    A stride coprime with the anode count visits every position once per cycle; a stride
    near a third of the count keeps consecutive changes far apart in the cell.
    """
    stride = max(1, anodes // 3)
    while math.gcd(stride, anodes) != 1:
        stride += 1
    return [(slot * stride) % anodes + 1 for slot in range(anodes)]


def _entropy(value: int) -> int:
    """Map any integer (a block index may be negative) to SeedSequence's unsigned entropy."""
    return value % 2**64


@dataclass(frozen=True)
class _LineCurrent:
    """Slow drift of the line current: a few sines, so that its integral is exact."""

    base_ka: float
    amplitude_ka: np.ndarray
    omega: np.ndarray  # rad/s
    phase: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, params: SimParams) -> _LineCurrent:
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
        return self.base_ka + np.sin(angle) @ self.amplitude_ka

    def integral_ka_h(self, t0_s: np.ndarray, t1_s: np.ndarray) -> np.ndarray:
        """∫ I dt from t0 to t1 of the noise-free current, kA·h."""
        cos0 = np.cos(np.multiply.outer(t0_s, self.omega) + self.phase)
        cos1 = np.cos(np.multiply.outer(t1_s, self.omega) + self.phase)
        drift = (cos0 - cos1) @ (self.amplitude_ka / self.omega)
        return (self.base_ka * (t1_s - t0_s) + drift) / S_PER_H


@dataclass(frozen=True)
class _CellTraits:
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
    def draw(cls, rng: np.random.Generator, cells: int, p: SimParams) -> _CellTraits:
        """Resistance set point from the voltage offset: U = E0 + R·I at nominal current."""
        u = rng.random((cells, 11)).T
        target_v = p.cell_voltage_v + (2 * u[0] - 1) * p.cell_offset_v
        tap_period_s = _between(u[8], p.tap_interval_h) * S_PER_H
        low, high = np.log(p.noise_uohm)
        return cls(
            resistance_uohm=1000 * (target_v - p.back_emf_v) / p.line_current_ka,
            swing_v=u[1] * p.voltage_swing_v,
            swing_omega=2 * np.pi / (_between(u[2], (6.0, 30.0)) * S_PER_H),
            swing_phase=2 * np.pi * u[3],
            bath_offset_c=(2 * u[4] - 1) * p.bath_offset_c,
            bath_omega=2 * np.pi / (_between(u[5], (12.0, 48.0)) * S_PER_H),
            bath_phase=2 * np.pi * u[6],
            noise_uohm=np.exp(low + u[7] * (high - low)),
            anode_phase_s=u[9] * p.cycle_days * S_PER_DAY,
            tap_period_s=tap_period_s,
            tap_phase_s=u[10] * tap_period_s,
        )


def _between(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Scale uniforms in [0, 1) to [low, high)."""
    return bounds[0] + u * (bounds[1] - bounds[0])


@dataclass(frozen=True)
class _AnodeChanges:
    """Anode changes as parallel arrays, sorted by cell then nominal time."""

    cell: np.ndarray
    ts_ms: np.ndarray
    anode: np.ndarray
    other_block: np.ndarray
    butt_mm: np.ndarray
    step_v: np.ndarray


@dataclass(frozen=True)
class _AnodeEffects:
    """Anode effects as parallel arrays."""

    cell: np.ndarray
    start_s: np.ndarray
    duration_s: np.ndarray
    peak_v: np.ndarray


@dataclass(frozen=True)
class _Taps:
    """Metal taps as parallel arrays."""

    cell: np.ndarray
    ts_ms: np.ndarray
    metal_kg: np.ndarray


class PotlineSim:
    """A potline of ``cells`` cells in series, sampled every ``interval_s`` from ``start_ns``.

    Samples lie on the grid ``start_ns + k·interval`` (step ``k``, negative before the
    start); events are defined at any time, before the start too.
    """

    def __init__(
        self,
        potline: str = "P1",
        cells: int = 10,
        *,
        seed: int = 0,
        start_ns: int,
        interval_s: float = 1.0,
        params: SimParams | None = None,
    ) -> None:
        interval_ns = round(interval_s * NS_PER_S)
        if interval_ns < NS_PER_MS or interval_ns % NS_PER_MS:
            raise ValueError("interval_s must be a whole number of milliseconds")
        if cells < 1:
            raise ValueError("cells must be >= 1")
        self.potline = potline
        self.cell_ids = tuple(f"C{i + 1:03d}" for i in range(cells))
        self.params = params or SimParams()
        self.start_ns = start_ns - start_ns % NS_PER_MS
        self.interval_ns = interval_ns
        self._key = (seed % 2**64, zlib.crc32(potline.encode()))
        self._line = _LineCurrent.draw(self._rng(_Stream.LINE), self.params)
        self._traits = _CellTraits.draw(self._rng(_Stream.CELLS), cells, self.params)
        self._sequence = np.array(anode_sequence(self.params.anodes_per_cell))

    def _rng(self, stream: _Stream, *index: int) -> np.random.Generator:
        return np.random.default_rng([*self._key, stream, *map(_entropy, index)])

    # ---- time grid ------------------------------------------------------------------

    def step_ns(self, k: int) -> int:
        """Time of step ``k``."""
        return self.start_ns + k * self.interval_ns

    def steps(self, t0_ns: int, t1_ns: int) -> range:
        """Steps whose time lies in ``[t0_ns, t1_ns)``."""
        first = -((self.start_ns - t0_ns) // self.interval_ns)
        end = -((self.start_ns - t1_ns) // self.interval_ns)
        return range(first, max(first, end))

    # ---- telemetry ------------------------------------------------------------------

    def columns(self, k0: int, n: int) -> Columns:
        """Telemetry of steps ``k0 .. k0+n-1`` for all cells, as arrays: the fast path."""
        p, tr = self.params, self._traits
        ts_ns = self.step_ns(k0) + np.arange(n, dtype=np.int64) * self.interval_ns
        t_s = ts_ns / NS_PER_S
        z_current, z_cells = self._noise(k0, n)
        current = self._line.value(t_s) + p.current_noise_ka * z_current
        step_v, decay = self._disturbance(t_s)
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
        return Columns(
            cells=self.cell_ids,
            ts_ns=ts_ns,
            line_current_ka=np.round(current, 2),
            cell_voltage_v=np.round(voltage, 4),
            bath_temp_c=np.round(bath, 1),
            noise_uohm=np.round(noise, 2),
        )

    def _noise(self, k0: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Standard normals for steps k0..k0+n-1: current (n,), and (3, n, cells) per cell.

        Drawn per block of steps so that any range of steps gets the same numbers.
        """
        cells = len(self.cell_ids)
        first_block = k0 // NOISE_BLOCK_STEPS
        last_block = max(first_block, (k0 + n - 1) // NOISE_BLOCK_STEPS)
        currents, per_cell = [], []
        for block in range(first_block, last_block + 1):
            rng = self._rng(_Stream.NOISE, block)
            currents.append(rng.standard_normal(NOISE_BLOCK_STEPS))
            per_cell.append(rng.standard_normal((cells, 3, NOISE_BLOCK_STEPS)))
        skip = k0 - first_block * NOISE_BLOCK_STEPS
        z_current = np.concatenate(currents)[skip : skip + n]
        z_cells = np.concatenate(per_cell, axis=2)[:, :, skip : skip + n]
        return z_current, z_cells.transpose(1, 2, 0)

    def _disturbance(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voltage step (V) and unit decay after each anode change, both (steps, cells).

        A new, cold anode takes current slowly: the voltage steps up and recovers with
        time constant ``change_decay_h``; the cut-off is per sample, so chunks agree.
        """
        tau = self.params.change_decay_h * S_PER_H
        horizon = DISTURBANCE_TIME_CONSTANTS * tau
        shape = (len(t_s), len(self.cell_ids))
        step_v, decay = np.zeros(shape), np.zeros(shape)
        if not len(t_s):
            return step_v, decay
        changes = self._anode_changes(t_s[0] - horizon, t_s[-1] + 1.0)
        for cell, ts_ms, amplitude in zip(changes.cell, changes.ts_ms, changes.step_v, strict=True):
            t_change = ts_ms / 1000
            lo, hi = np.searchsorted(t_s, [t_change, t_change + horizon])
            unit = np.exp(-(t_s[lo:hi] - t_change) / tau)
            decay[lo:hi, cell] += unit
            step_v[lo:hi, cell] += amplitude * unit
        return step_v, decay

    def _apply_anode_effects(self, t_s: np.ndarray, voltage: np.ndarray, noise: np.ndarray):
        """Overwrite the samples during anode effects: the voltage jumps, then is quenched."""
        if not len(t_s):
            return
        effects = self._anode_effects(t_s[0], t_s[-1] + 1.0)
        for cell, start, duration, peak in zip(
            effects.cell, effects.start_s, effects.duration_s, effects.peak_v, strict=True
        ):
            lo, hi = np.searchsorted(t_s, [start, start + duration])
            elapsed = (t_s[lo:hi] - start) / duration
            voltage[lo:hi, cell] = peak * (1 - AE_QUENCH_SHARE * elapsed)
            noise[lo:hi, cell] *= AE_NOISE_FACTOR

    def telemetry(self, t0_ns: int, t1_ns: int) -> Iterator[Step]:
        """One ``Step`` per sample time in ``[t0_ns, t1_ns)``."""
        steps = self.steps(t0_ns, t1_ns)
        for k0 in range(steps.start, steps.stop, CHUNK_STEPS):
            cols = self.columns(k0, min(CHUNK_STEPS, steps.stop - k0))
            yield from map(Step, cols.ts_ns.tolist(), cols.payloads())

    # ---- events ---------------------------------------------------------------------

    def events(self, t0_ns: int, t1_ns: int) -> list[SimEvent]:
        """Anode changes and metal taps in ``[t0_ns, t1_ns)``, in time order.

        Needs no telemetry, so it is cheap for a long past window (seeding anode history).
        """
        t0_s, t1_s = t0_ns / NS_PER_S, t1_ns / NS_PER_S
        events = self._change_events(self._anode_changes(t0_s, t1_s))
        events += self._tap_events(self._taps(t0_s, t1_s))
        inside = [e for e in events if t0_ns <= e.ts_ns < t1_ns]
        return sorted(inside, key=lambda e: (e.ts_ns, e.cell, e.payload["type"]))

    def _change_events(self, changes: _AnodeChanges) -> list[SimEvent]:
        p = self.params
        return [
            SimEvent(
                ts * NS_PER_MS,
                self.cell_ids[cell],
                {
                    "ts": ts,
                    "type": "anode_change",
                    "anode": anode,
                    "block": p.other_block if other else p.block,
                    "butt_mm": butt,
                },
            )
            for cell, ts, anode, other, butt in zip(
                changes.cell.tolist(),
                changes.ts_ms.tolist(),
                changes.anode.tolist(),
                changes.other_block.tolist(),
                changes.butt_mm.tolist(),
                strict=True,
            )
        ]

    def _tap_events(self, taps: _Taps) -> list[SimEvent]:
        return [
            SimEvent(
                ts * NS_PER_MS,
                self.cell_ids[cell],
                {"ts": ts, "type": "metal_tap", "metal_kg": kg},
            )
            for cell, ts, kg in zip(
                taps.cell.tolist(), taps.ts_ms.tolist(), taps.metal_kg.tolist(), strict=True
            )
        ]

    def _anode_changes(self, t0_s: float, t1_s: float) -> _AnodeChanges:
        """Changes with a time near ``[t0_s, t1_s)`` (callers filter exactly).

        Slot j of a cell is due at phase + j·cycle/anodes and changes position
        ``sequence[j mod anodes]``; its time is jittered by at most half of
        ``cycle_jitter_days`` either way, so each achieved cycle is within the jitter.
        """
        p, cells = self.params, len(self.cell_ids)
        anodes = p.anodes_per_cell
        cycle_s = p.cycle_days * S_PER_DAY
        jitter_s = p.cycle_jitter_days * S_PER_DAY
        spacing_s = cycle_s / anodes
        j = np.arange(
            math.floor((t0_s - jitter_s - cycle_s) / spacing_s),
            math.ceil((t1_s + jitter_s) / spacing_s) + 1,
        )
        this, prev = self._anode_draws(j, anodes)
        nominal_s = self._traits.anode_phase_s[:, None] + j * spacing_s
        due_s = nominal_s + (this[..., 0] - 0.5) * jitter_s
        prev_due_s = nominal_s - cycle_s + (prev[..., 0] - 0.5) * jitter_s
        achieved_days = (due_s - prev_due_s) / S_PER_DAY
        ts_ms = np.round(due_s * 1000).astype(np.int64)
        keep = (due_s >= t0_s - 1.0) & (due_s < t1_s + 1.0)
        butt = (
            p.butt_mm
            + p.burn_mm_per_day * (p.cycle_days - achieved_days)
            + (2 * this[..., 2] - 1) * p.butt_noise_mm
        )
        return _AnodeChanges(
            cell=np.broadcast_to(np.arange(cells)[:, None], keep.shape)[keep],
            ts_ms=ts_ms[keep],
            anode=np.broadcast_to(self._sequence[j % anodes], keep.shape)[keep],
            other_block=(this[..., 1] < p.other_block_share)[keep],
            butt_mm=np.round(butt[keep]).astype(np.int64),
            step_v=_between(this[..., 3], p.change_step_v)[keep],
        )

    def _anode_draws(self, j: np.ndarray, anodes: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniforms ``(cells, len(j), 4)`` of slots j and of the same slots a cycle earlier."""
        first_cycle = int(j[0] - anodes) // anodes
        cells = len(self.cell_ids)
        draws = np.stack(
            [
                self._rng(_Stream.ANODE, cycle).random((cells, anodes, 4))
                for cycle in range(first_cycle, int(j[-1]) // anodes + 1)
            ]
        )
        cell_index = np.arange(cells)[:, None]

        def pick(slots: np.ndarray) -> np.ndarray:
            return draws[slots // anodes - first_cycle, cell_index, slots % anodes]

        return pick(j), pick(j - anodes)

    def _taps(self, t0_s: float, t1_s: float) -> _Taps:
        """Taps of all cells with a time near ``[t0_s, t1_s)`` (callers filter exactly)."""
        per_cell = [self._cell_taps(cell, t0_s, t1_s) for cell in range(len(self.cell_ids))]
        return _Taps(
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
                self._rng(_Stream.TAP, cell, block).random((TAP_BLOCK, 2))
                for block in range(first_block, int(k[-1]) // TAP_BLOCK + 1)
            ]
        )
        offset = first_block * TAP_BLOCK
        return draws[k - offset], draws[k - 1 - offset]

    def _anode_effects(self, t0_s: float, t1_s: float) -> _AnodeEffects:
        """Anode effects overlapping ``[t0_s, t1_s)``.

        Each hour of a cell holds one effect with probability rate/24, fully inside the
        hour: a Poisson-like process whose effects never overlap.
        """
        p, cells = self.params, len(self.cell_ids)
        days = np.arange(math.floor((t0_s - S_PER_H) / S_PER_DAY), math.floor(t1_s / S_PER_DAY) + 1)
        u = np.stack(
            [
                self._rng(_Stream.AE, day).random((cells, AE_SLOTS_PER_DAY, 4))
                for day in days.tolist()
            ],
            axis=1,
        )
        slot_start_s = np.add.outer(days * S_PER_DAY, np.arange(AE_SLOTS_PER_DAY) * S_PER_H)
        duration_s = _between(u[..., 2], p.ae_duration_s)
        start_s = slot_start_s + u[..., 1] * (S_PER_H - duration_s)
        hit = (
            (u[..., 0] < p.ae_rate_per_cell_day / AE_SLOTS_PER_DAY)
            & (start_s < t1_s)
            & (start_s + duration_s > t0_s)
        )
        return _AnodeEffects(
            cell=np.broadcast_to(np.arange(cells)[:, None, None], hit.shape)[hit],
            start_s=start_s[hit],
            duration_s=duration_s[hit],
            peak_v=_between(u[..., 3], p.ae_voltage_v)[hit],
        )

    # ---- both, interleaved ----------------------------------------------------------

    def stream(self, t0_ns: int, t1_ns: int) -> Iterator[Record]:
        """Telemetry and events of ``[t0_ns, t1_ns)`` in time order.

        An event comes after the samples of its own instant. Generated chunk by chunk, so
        a long window never sits in memory.
        """
        steps = self.steps(t0_ns, t1_ns)
        inner = [self.step_ns(k) for k in steps[CHUNK_STEPS::CHUNK_STEPS]]
        bounds = [t0_ns, *inner, t1_ns]
        for c0, c1 in pairwise(bounds):
            yield from self._merge(self.telemetry(c0, c1), self.events(c0, c1))

    def _merge(self, steps: Iterator[Step], events: list[SimEvent]) -> Iterator[Record]:
        pending = iter(events)
        event = next(pending, None)
        for step in steps:
            while event is not None and event.ts_ns < step.ts_ns:
                yield Record(event.ts_ns, event.cell, "event", event.payload)
                event = next(pending, None)
            for cell, payload in zip(self.cell_ids, step.payloads, strict=True):
                yield Record(step.ts_ns, cell, "telemetry", payload)
        if event is not None:
            yield Record(event.ts_ns, event.cell, "event", event.payload)
        for event in pending:
            yield Record(event.ts_ns, event.cell, "event", event.payload)
