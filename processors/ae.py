"""Anode effects from cell voltage, and their PFC emissions.

These are the contract's ``anode_effect`` and ``ae_potline``.

An anode effect starts at the first sample above the threshold and ends at the first
sample at or below it; a data gap inside one ends it at the last sample before the gap
(``interrupted``). An open effect is part of the state, so one that straddles a batch, a
period boundary or a restart is counted once, in the period where it started.

PFC by the IPCC 2006 Tier 2 slope method: CF4 kg = slope × AE-minutes per cell-day ×
aluminium t; C2F6 = CF4 × ratio; CO2e t = (CF4 × GWP_CF4 + C2F6 × GWP_C2F6) / 1000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from processors.energy import FARADAY_T_PER_KAH
from processors.integrate import integrate
from processors.model import Batch, FieldValue, Point
from processors.periods import KINDS, Calendar, period_index

NS = 1_000_000_000
DAY_NS = 86_400 * NS
# per potline period: count, AE seconds, charge kA·h, cells that sent telemetry, written at
COUNT, SECONDS, CHARGE, CELLS, WRITTEN_AT, END = range(6)


@dataclass(frozen=True)
class Pfc:
    """IPCC Tier 2 coefficients; defaults for centre-worked prebake, GWP AR5."""

    slope_cf4: float = 0.143
    c2f6_ratio: float = 0.121
    gwp_cf4: float = 6630.0
    gwp_c2f6: float = 11100.0


@dataclass(frozen=True)
class AESettings:
    """What the processor needs of the config."""

    calendar: Calendar
    thresholds_v: dict[str, float]
    current_efficiency: dict[str, float]
    pfc: Pfc = Pfc()
    min_duration_s: float = 0.0
    max_gap_s: float = 60.0
    update_interval_s: float = 60.0
    complete_grace_s: float = 900.0
    kinds: tuple[str, ...] = KINDS


class AnodeEffectProcessor:
    """Detects anode effects; writes each one and its potline's rates and emissions."""

    name = "anode_effects"

    def __init__(self, settings: AESettings) -> None:
        self.s = settings
        self._gap_ns = int(settings.max_gap_s * NS)
        self._update_ns = int(settings.update_interval_s * NS)
        self._grace_ns = int(settings.complete_grace_s * NS)

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Detect, count and write."""
        st = _copy(state)
        points: list[Point] = []
        sb = batch.samples
        if len(sb):
            for c, t, v in sb.by_cell():
                potline, cell = sb.cells[c]
                if potline in self.s.thresholds_v:
                    points += self._detect(st, potline, cell, t, v)
            for contrib in integrate(
                sb,
                st["last"],
                self.s.calendar,
                self.s.kinds,
                self._gap_ns,
                counts=self.s.thresholds_v.__contains__,
            ):
                acc = self._period(
                    st,
                    contrib.cell_key.split("/")[0],
                    contrib.kind,
                    contrib.start_ns,
                    contrib.end_ns,
                )
                if acc is not None:
                    acc[CHARGE] += contrib.charge_kah
                    cell = contrib.cell_key.split("/", 1)[1]
                    if cell not in acc[CELLS]:
                        acc[CELLS].append(cell)
        points += self._write(st, final=False)
        return st, points

    def flush(self, state: Any) -> tuple[Any, list[Point]]:
        """Write every open period now."""
        st = _copy(state)
        return st, self._write(st, final=True)

    # detection

    def _detect(
        self, st: dict[str, Any], potline: str, cell: str, t: np.ndarray, v: np.ndarray
    ) -> list[Point]:
        key = f"{potline}/{cell}"
        above = v > self.s.thresholds_v[potline]
        prev_t = st["seen"].get(key)
        opened: list[Any] | None = st["open"].pop(key, None)  # [start, peak, last above]
        gap = np.empty(len(t), dtype=bool)
        gap[0] = prev_t is not None and t[0] - prev_t > self._gap_ns
        gap[1:] = np.diff(t) > self._gap_ns
        was_above = np.r_[opened is not None, above[:-1]]
        points: list[Point] = []
        start_idx = 0
        for k in np.flatnonzero((above != was_above) | gap).tolist():
            if opened is not None and (gap[k] or not above[k]):
                peak = max(opened[1], float(v[start_idx:k].max())) if k > start_idx else opened[1]
                last_above = int(t[k - 1]) if k > start_idx else opened[2]
                end = last_above if gap[k] else int(t[k])
                points += self._ended(st, potline, cell, opened[0], end, peak, gap[k])
                opened = None
            if opened is None and above[k]:
                opened = [int(t[k]), float(v[k]), int(t[k])]
                start_idx = k
        if opened is not None:
            if len(t) > start_idx:
                opened[1] = max(opened[1], float(v[start_idx:].max()))
                opened[2] = int(t[np.flatnonzero(above)[-1]]) if above.any() else opened[2]
            st["open"][key] = opened
        st["seen"][key] = int(t[-1])
        return points

    def _ended(
        self,
        st: dict[str, Any],
        potline: str,
        cell: str,
        start: int,
        end: int,
        peak: float,
        interrupted: bool,
    ) -> list[Point]:
        duration = (end - start) / NS
        if duration < self.s.min_duration_s:
            return []
        for kind in self.s.kinds:
            starts = self.s.calendar.starts(kind, start, start)
            k = int(period_index(starts, [start])[0])
            acc = self._period(st, potline, kind, int(starts[k]), int(starts[k + 1]))
            if acc is not None:
                acc[COUNT] += 1
                acc[SECONDS] += duration
                acc[WRITTEN_AT] = -1  # changed: write it on this step
        fields: dict[str, FieldValue] = {"duration_s": duration, "peak_v": peak}
        if interrupted:
            fields["interrupted"] = True
        return [Point("anode_effect", (("potline", potline), ("cell", cell)), fields, start)]

    # periods

    def _period(
        self, st: dict[str, Any], potline: str, kind: str, start: int, end: int
    ) -> list[Any] | None:
        if end <= st["done"].get(f"{potline}|{kind}", 0):
            return None  # closed: its last point stands
        return st["periods"].setdefault(f"{potline}|{kind}|{start}", [0, 0.0, 0.0, [], 0, end])

    def _write(self, st: dict[str, Any], *, final: bool) -> list[Point]:
        newest: dict[str, int] = {}
        for key, t in st["seen"].items():
            potline = key.split("/", 1)[0]
            newest[potline] = max(newest.get(potline, 0), t)
        points = []
        for key in list(st["periods"]):
            potline, kind, start = key.split("|")
            acc = st["periods"][key]
            now = newest.get(potline, 0)
            closing = now >= acc[END] + self._grace_ns
            due = acc[WRITTEN_AT] < 0 or now - acc[WRITTEN_AT] >= self._update_ns
            if closing or final or due:
                acc[WRITTEN_AT] = now
                points.append(self._point(potline, kind, int(start), acc))
            if closing:
                del st["periods"][key]
                st["done"][f"{potline}|{kind}"] = max(
                    st["done"].get(f"{potline}|{kind}", 0), acc[END]
                )
        return points

    def _point(self, potline: str, kind: str, start: int, acc: list[Any]) -> Point:
        p = self.s.pfc
        minutes = acc[SECONDS] / 60.0
        cell_days = len(acc[CELLS]) * (acc[END] - start) / DAY_NS
        metal_t = FARADAY_T_PER_KAH * acc[CHARGE] * self.s.current_efficiency[potline]
        fields: dict[str, FieldValue] = {"count": acc[COUNT], "minutes": minutes}
        if cell_days > 0:
            aem = minutes / cell_days
            cf4 = p.slope_cf4 * aem * metal_t
            c2f6 = cf4 * p.c2f6_ratio
            fields |= {
                "aef_per_cell_day": acc[COUNT] / cell_days,
                "ae_min_per_cell_day": aem,
                "cf4_kg": cf4,
                "c2f6_kg": c2f6,
                "co2e_t": (cf4 * p.gwp_cf4 + c2f6 * p.gwp_c2f6) / 1000.0,
            }
        return Point("ae_potline", (("potline", potline), ("period", kind)), fields, start)


def _copy(state: Any) -> dict[str, Any]:
    state = state or {}
    return {
        "last": {k: list(v) for k, v in state.get("last", {}).items()},
        "seen": dict(state.get("seen", {})),
        "open": {k: list(v) for k, v in state.get("open", {}).items()},
        "periods": {
            k: [*v[:CELLS], list(v[CELLS]), *v[CELLS + 1 :]]
            for k, v in state.get("periods", {}).items()
        },
        "done": dict(state.get("done", {})),
    }
