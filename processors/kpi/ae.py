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

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from processors import legacy
from processors.base import PeriodId
from processors.kpi.by_cell import ByCell
from processors.kpi.energy import FARADAY_T_PER_KAH
from processors.kpi.integrate import LastSamples, integrate, last_from_json, last_to_json
from processors.kpi.ledger import (
    CellKey,
    Ledger,
    PeriodKey,
    cells_from_json,
    cells_to_json,
    flat,
    newest_by_potline,
    period_at,
)
from processors.kpi.periods import KINDS, Calendar
from processors.model import Batch, Event, FieldValue, Point, SampleBatch

NS = 1_000_000_000
DAY_NS = 86_400 * NS


@dataclass(frozen=True)
class Pfc:
    """IPCC Tier 2 coefficients (their defaults are the config's ``pfc:``)."""

    slope_cf4: float
    c2f6_ratio: float
    gwp_cf4: float
    gwp_c2f6: float


@dataclass(frozen=True, kw_only=True)
class AESettings:
    """What the processor needs of the config; built by ``collector.build``, no defaults."""

    calendar: Calendar
    thresholds_v: dict[str, float]
    current_efficiency: dict[str, float]
    pfc: Pfc
    min_duration_s: float
    max_gap_s: float
    update_interval_s: float
    complete_grace_s: float
    kinds: tuple[str, ...] = KINDS


class Opened(NamedTuple):
    """An effect still going at the end of a batch."""

    start_ns: int
    peak_v: float
    last_above_ns: int


@dataclass(slots=True)
class Counts:
    """A potline period's effects, charge and reporting cells; when it was last written."""

    count: int = 0
    seconds: float = 0.0
    charge_kah: float = 0.0
    cells: list[str] = field(default_factory=list)  # sorted
    written_at_ns: int = 0
    changed: bool = False  # an effect was counted: write it on this step

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Counts:
        """The counts a checkpoint holds."""
        return cls(**{**data, "cells": list(data["cells"])})


@dataclass
class _State:
    last: LastSamples
    seen: dict[CellKey, int]
    open: dict[CellKey, Opened]
    ledger: Ledger[Counts]

    @classmethod
    def of(cls, state: Any) -> _State:
        """The live state as it is, or one read from a checkpoint (of any release)."""
        if isinstance(state, cls):
            return state
        state = legacy.upgraded(state, _from_legacy) or {}
        return cls(
            last_from_json(state.get("last")),
            cells_from_json(state.get("seen"), int),
            cells_from_json(state.get("open"), lambda d: Opened(**d)),
            Ledger.from_json(state.get("ledger"), Counts.of),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "last": last_to_json(self.last),
            "seen": cells_to_json(self.seen, int),
            "open": cells_to_json(self.open, Opened._asdict),
            "ledger": self.ledger.to_json(flat),
        }


def _from_legacy(old: Mapping[str, Any]) -> dict[str, Any]:
    """The state of the previous release: periods [count, s, kA·h, cells, written, end]."""

    def counts(acc: list[Any]) -> tuple[int, dict[str, Any]]:
        count, seconds, charge, cells, written, end = acc
        changed = written < 0
        fields = {"count": count, "seconds": seconds, "charge_kah": charge}
        fields |= {"cells": sorted(cells), "written_at_ns": 0 if changed else written}
        return end, {**fields, "changed": changed}

    return {
        "last": legacy.last_samples(old.get("last", {})),
        "seen": legacy.by_cell(old.get("seen", {}), int),
        "open": legacy.by_cell(
            old.get("open", {}),
            lambda o: {"start_ns": o[0], "peak_v": o[1], "last_above_ns": o[2]},
        ),
        "ledger": legacy.ledger(old, counts),
    }


class AnodeEffectProcessor:
    """Detects anode effects; writes each one and its potline's rates and emissions."""

    name = "anode_effects"
    instants = frozenset({"anode_effect"})
    day_measurements = frozenset({"ae_potline", "sec_cell"})

    def __init__(self, settings: AESettings) -> None:
        self.s = settings
        self._gap_ns = int(settings.max_gap_s * NS)
        self._update_ns = int(settings.update_interval_s * NS)
        self._grace_ns = int(settings.complete_grace_s * NS)

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Detect, count and write."""
        st = _State.of(state)
        points: list[Point] = []
        sb = batch.samples
        if len(sb):
            points += self._detect_all(st, sb)
            self._charge(st, sb)
        points += self._write(st, final=False)
        return st, points

    def flush(self, state: Any) -> tuple[Any, list[Point]]:
        """Write every open period now."""
        st = _State.of(state)
        points = self._write(st, final=True)
        return st, points

    def checkpoint(self, state: Any) -> Any:
        """The state as JSON data."""
        return _State.of(state).to_json()

    def rebase(self, state: Any, fresh: Any, periods: Collection[PeriodId]) -> Any:
        """The live state with these periods' counts from the state rebuilt from history."""
        st = _State.of(state)
        st.ledger.rebase(_State.of(fresh).ledger, map(PeriodKey._make, periods))
        return st

    def snapshot(self, state: Any) -> list[Point]:
        """The potline points of the open periods, as they stand."""
        ledger = _State.of(state).ledger
        return [self._point(key, period.end_ns, period.acc) for key, period in ledger.items()]

    def _charge(self, st: _State, sb: SampleBatch) -> None:
        """Charge and reporting cells per period, for the emissions per tonne and cell-day."""
        for sums in integrate(
            sb,
            st.last,
            self.s.calendar,
            self.s.kinds,
            self._gap_ns,
            counts=self.s.thresholds_v.__contains__,
        ):
            key = PeriodKey(sums.potline, sums.kind, sums.start_ns)
            acc = st.ledger.add(key, sums.end_ns, Counts)
            if acc is None:
                continue
            charge = acc.charge_kah
            for q in sums.charge_kah:  # one by one, in cell order, as the sums always added
                charge += q
            acc.charge_kah = charge
            if len(acc.cells) == len(sums.cells) and acc.cells == sums.cells:
                continue  # the same cells as before, in the same order: the usual case
            new = set(sums.cells).difference(acc.cells)
            if new:
                acc.cells.extend(new)
                acc.cells.sort()

    # detection

    def _detect_all(self, st: _State, sb: SampleBatch) -> list[Point]:
        """The effects of every cell of the batch, in cell order.

        Nearly every cell is quiet (no effect open, no sample above its threshold): for
        those only the newest time is kept, found for the whole batch at once, so a batch
        of one sample per cell costs no numpy call per cell.
        """
        s = ByCell.of(sb)  # the sort the integrating processors make of the same batch
        code, t, v, lo = s.code, s.t, s.v, s.heads
        hi = np.r_[lo[1:], len(code)]
        thresholds = self.s.thresholds_v
        limit = np.array([thresholds.get(p, np.nan) for p, _ in sb.cells])
        above = np.logical_or.reduceat(v > limit[code], lo)  # NaN: never above
        seen, opened = st.seen, st.open
        points: list[Point] = []
        newest = t[hi - 1].tolist()
        groups = zip(
            code[lo].tolist(), above.tolist(), newest, lo.tolist(), hi.tolist(), strict=True
        )
        for c, any_above, t_last, a, b in groups:
            potline, cell = name = sb.cells[c]
            if potline not in thresholds:
                continue
            if not any_above and name not in opened:
                if name in seen:  # the equal tuple finds the CellKey, which stays the key
                    seen[name] = t_last
                else:
                    seen[CellKey(potline, cell)] = t_last
                continue
            points += self._detect(st, CellKey(potline, cell), t[a:b], v[a:b])
        return points

    def _detect(self, st: _State, key: CellKey, t: np.ndarray, v: np.ndarray) -> list[Point]:
        """The effects of one cell's samples that ended, the open one kept in the state.

        Called per cell and batch, and nearly every cell is quiet: with no effect open and
        no sample above the threshold, a gap starts nothing and ends nothing, so only the
        newest time is kept, without the arrays of the general case.
        """
        above = v > self.s.thresholds_v[key.potline]
        opened = st.open.pop(key, None)
        if opened is None and not above.any():
            st.seen[key] = int(t[-1])
            return []
        prev_t = st.seen.get(key)
        gap = np.empty(len(t), dtype=bool)
        gap[0] = prev_t is not None and t[0] - prev_t > self._gap_ns
        gap[1:] = np.diff(t) > self._gap_ns
        was_above = np.empty(len(t), dtype=bool)
        was_above[0] = opened is not None
        was_above[1:] = above[:-1]
        points: list[Point] = []
        start_idx = 0
        for k in np.flatnonzero((above != was_above) | gap).tolist():
            if opened is not None and (gap[k] or not above[k]):
                if k > start_idx:
                    peak = max(opened.peak_v, float(v[start_idx:k].max()))
                    last_above = int(t[k - 1])
                else:
                    peak, last_above = opened.peak_v, opened.last_above_ns
                end = last_above if gap[k] else int(t[k])
                points += self._ended(st, key, opened.start_ns, end, peak, bool(gap[k]))
                opened = None
            if opened is None and above[k]:
                opened = Opened(int(t[k]), float(v[k]), int(t[k]))
                start_idx = k
        if opened is not None:
            st.open[key] = _extended(opened, t[start_idx:], v[start_idx:], above[start_idx:])
        st.seen[key] = int(t[-1])
        return points

    def _ended(
        self, st: _State, key: CellKey, start: int, end: int, peak: float, interrupted: bool
    ) -> list[Point]:
        duration = (end - start) / NS
        if duration < self.s.min_duration_s:
            return []
        for kind in self.s.kinds:
            p_start, p_end = period_at(self.s.calendar, kind, start)
            acc = st.ledger.add(PeriodKey(key.potline, kind, p_start), p_end, Counts)
            if acc is not None:
                acc.count += 1
                acc.seconds += duration
                acc.changed = True
        fields: dict[str, FieldValue] = {"duration_s": duration, "peak_v": peak}
        if interrupted:
            fields["interrupted"] = True
        tags = (("potline", key.potline), ("cell", key.cell))
        return [Point("anode_effect", tags, fields, start)]

    # periods

    def _write(self, st: _State, *, final: bool) -> list[Point]:
        newest = newest_by_potline(st.seen)
        points = []
        for key, period in st.ledger.items():
            acc = period.acc
            now = newest.get(key.potline, 0)
            closing = st.ledger.past_grace(key, now, self._grace_ns)
            due = acc.changed or now - acc.written_at_ns >= self._update_ns
            if closing or final or due:
                acc.written_at_ns, acc.changed = now, False
                points.append(self._point(key, period.end_ns, acc))
            if closing:
                st.ledger.close(key)
        return points

    def _point(self, key: PeriodKey, end: int, acc: Counts) -> Point:
        p = self.s.pfc
        minutes = acc.seconds / 60.0
        cell_days = len(acc.cells) * (end - key.start_ns) / DAY_NS
        metal_t = FARADAY_T_PER_KAH * acc.charge_kah * self.s.current_efficiency[key.potline]
        fields: dict[str, FieldValue] = {"count": acc.count, "minutes": minutes}
        if cell_days > 0:
            aem = minutes / cell_days
            cf4 = p.slope_cf4 * aem * metal_t
            c2f6 = cf4 * p.c2f6_ratio
            fields |= {
                "aef_per_cell_day": acc.count / cell_days,
                "ae_min_per_cell_day": aem,
                "cf4_kg": cf4,
                "c2f6_kg": c2f6,
                "co2e_t": (cf4 * p.gwp_cf4 + c2f6 * p.gwp_c2f6) / 1000.0,
            }
        tags = (("potline", key.potline), ("period", key.kind))
        return Point("ae_potline", tags, fields, key.start_ns)

    # a month from its days

    def summed(
        self,
        fresh: Any,
        month: PeriodId,
        end_ns: int,
        days: Sequence[Point],
        events: Sequence[Event],
        now_ns: int,
    ) -> tuple[Any, list[Point]]:
        """The month's effects as the sums of its days' counts and durations.

        The charge and the reporting cells (the emissions' tonnes and cell-days) are not on
        ``ae_potline``: a month's cells are the union of its days' cells, not a sum. Both
        come from the days' ``sec_cell`` points, which the kWh/t processor writes for every
        cell and day with an interval, the same intervals this processor integrates.
        """
        key = PeriodKey._make(month)
        if key.potline not in self.s.thresholds_v or not days:
            return fresh, []
        acc, cells = Counts(), set()
        for p in days:
            if p.measurement == "ae_potline":
                acc.count += int(p.fields["count"])
                acc.seconds += 60.0 * float(p.fields["minutes"])
            elif p.measurement == "sec_cell":
                acc.charge_kah += float(p.fields["charge_kah"])
                cells.add(dict(p.tags)["cell"])
        acc.cells = sorted(cells)
        st = _State.of(fresh)
        acc.written_at_ns = newest_by_potline(st.seen).get(key.potline, 0)
        complete = st.ledger.closed(key, end_ns) or now_ns >= end_ns + self._grace_ns
        st.ledger.put(key, end_ns, acc, closed=complete)
        return st, [self._point(key, end_ns, acc)]


def _extended(opened: Opened, t: np.ndarray, v: np.ndarray, above: np.ndarray) -> Opened:
    """The open effect with the batch's samples since it started (all, if before it)."""
    if not len(t):
        return opened
    last_above = int(t[np.flatnonzero(above)[-1]]) if above.any() else opened.last_above_ns
    return Opened(opened.start_ns, max(opened.peak_v, float(v.max())), last_above)
