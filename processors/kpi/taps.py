"""Current efficiency over a cell's tap cycle: the contract's ``tap_cycle`` (section 6.4).

The metal tapped at a tap is what the cell made since its previous tap, so the tap cycle
is the natural span over which to compare metal with charge: ``ce`` = metal / (0.33557
kg/kA·h × charge), with the charge ∫ I dt from the previous tap to this one.

The charge is read from each cell's charge by minute (``charge_history``), integrated by
the samples' own timestamps, never by when the tap arrived: a tap logged after the samples
that pass it (the normal case) and a tap logged before them (its samples come later) give
the same point. A cycle is written once the cell's samples have passed its tap; until then
it waits in the state. Samples are integrated as for ``sec_cell``: in order, late ones
(at or before the cell's newest) left out, gaps over ``max_gap_s`` not counted, so a gap
shows as ``hours_covered`` below ``hours``.

What is kept, and why it is enough: per cell the newest tap, the cycles waiting for their
samples, and the minutes from the earliest instant a cycle still to come can start (the
previous tap of the oldest waiting cycle, else the newest tap), never more than the
longest cycle, ``tap_cycle_max_h``, behind the newest sample. A tap at or before the
cell's newest tap (a repeat, or one out of order) gives no cycle and changes nothing.

A recalculation (``Preceded``) reads the samples of a cycle that began before its periods
for the tapped cells only, and the live state takes the periods' minutes from it.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from processors.base import PeriodId
from processors.kpi.charge_history import (
    CHUNK_NS,
    History,
    MinuteGrid,
    parse_part_key,
    part_key,
)
from processors.kpi.energy import FARADAY_T_PER_KAH
from processors.kpi.integrate import LastSamples, integrate, last_from_json, last_to_json
from processors.kpi.ledger import CellKey, period_at
from processors.kpi.periods import Calendar
from processors.model import Batch, Event, MetalTap, Point

NS = 1_000_000_000
HOUR_NS = 3600 * NS
FARADAY_KG_PER_KAH = 1000.0 * FARADAY_T_PER_KAH
_GRID = MinuteGrid()
_KINDS = ("minute",)


@dataclass(frozen=True, kw_only=True)
class TapSettings:
    """What the processor needs of the config; built by ``collector.build``."""

    max_cycle_h: dict[str, float]  # the configured potlines and their longest cycle
    max_gap_s: float
    calendar: Calendar  # where a recalculation's periods end


class Cycle(NamedTuple):
    """A tap cycle: from the previous tap to this one, and the metal of this one."""

    start_ns: int
    end_ns: int
    metal_kg: float


@dataclass(slots=True)
class CellTaps:
    """A cell's newest tap, its cycles waiting for their samples, and its charge by minute."""

    tap_ns: int | None = None
    waiting: list[Cycle] = field(default_factory=list)
    history: History = field(default_factory=History)


@dataclass(slots=True)
class _State:
    """The processor's state between batches; ``whole`` after a read from a checkpoint."""

    last: LastSamples
    cells: dict[CellKey, CellTaps]
    whole: bool = False
    swept: int = -1  # the newest chunk index at which every cell's history was trimmed

    @classmethod
    def of(cls, state: Any) -> _State:
        """The live state as it is, or new objects read from a checkpoint (None: empty)."""
        if isinstance(state, cls):
            return state
        data: Mapping[str, Any] = state or {}
        cells: dict[CellKey, CellTaps] = {}
        for potline, by_cell in data.get("cells", {}).items():
            for cell, c in by_cell.items():
                waiting = [Cycle(int(a), int(b), float(kg)) for a, b, kg in c["waiting"]]
                cells[CellKey(potline, cell)] = CellTaps(c["tap_ns"], waiting)
        for key in sorted(data.get("parts", {}), key=parse_part_key):
            potline, cell, index = parse_part_key(key)
            taps = cells.setdefault(CellKey(potline, cell), CellTaps())
            taps.history.chunks[index] = array("d", data["parts"][key])
        return cls(last_from_json(data.get("last")), cells, whole=True)

    def main(self) -> dict[str, Any]:
        """The state without the charge history: the newest samples, taps and waiting cycles."""
        cells: dict[str, dict[str, Any]] = {}
        for key, c in sorted(self.cells.items()):
            waiting = [list(w) for w in c.waiting]
            cells.setdefault(key.potline, {})[key.cell] = {"tap_ns": c.tap_ns, "waiting": waiting}
        return {"last": last_to_json(self.last), "cells": cells}

    def parts(self) -> dict[str, list[float]]:
        """Every chunk of charge history, by its ``part_key``."""
        return {
            part_key(key.potline, key.cell, index): chunk.tolist()
            for key, c in sorted(self.cells.items())
            for index, chunk in c.history.chunks.items()
        }

    def changes(self) -> dict[str, list[float] | None]:
        """The chunks changed since the last call (None: forgotten), and forget the marks."""
        out: dict[str, list[float] | None] = {}
        for key, c in self.cells.items():
            h = c.history
            out.update({part_key(*key, i): None for i in h.removed})
            out.update({part_key(*key, i): h.chunks[i].tolist() for i in h.changed})
            h.changed.clear()
            h.removed.clear()
        return out


class TapCycleProcessor:
    """Keeps each cell's charge by minute and writes a ``tap_cycle`` point per tap cycle."""

    name = "tap_cycles"
    instants: frozenset[str] = frozenset()  # a cycle is stamped at its tap, which stays

    def __init__(self, settings: TapSettings) -> None:
        self.s = settings
        self._gap_ns = int(settings.max_gap_s * NS)
        self._max_ns = {p: int(h * HOUR_NS) for p, h in settings.max_cycle_h.items()}

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Integrate the batch by minute, take its taps, write the cycles whose samples are in."""
        st = _State.of(state)
        self._integrate(st, batch)
        touched = self._taps(st, batch)
        # a waiting cycle ends when its cell's samples pass it: only the batch's cells moved
        cells = st.cells  # a (potline, cell) tuple finds its CellKey: none made per cell
        touched.update(
            CellKey._make(c) for c in batch.samples.cells if c in cells and cells[c].waiting
        )
        if len(batch.samples) and int(batch.samples.ts_ns.max()) // CHUNK_NS > st.swept:
            # the history is forgotten by whole chunks, so every cell's need be looked at
            # only when the samples reach a new one: 2.7 µs a cell and batch saved
            st.swept = int(batch.samples.ts_ns.max()) // CHUNK_NS
            touched.update(CellKey._make(c) for c in batch.samples.cells if c in cells)
        points = []
        for key in sorted(touched):
            points += self._settle(st, key)
        return st, points

    def checkpoint(self, state: Any) -> Any:
        """The whole state as JSON data: its main part and every chunk of history."""
        st = _State.of(state)
        return {**st.main(), "parts": st.parts()}

    def changes(self, state: Any) -> tuple[Any, dict[str, Any], bool]:
        """The main part, the chunks changed since the last call, and whether that is all.

        A state read from a checkpoint has all its chunks changed, and they replace every
        chunk stored: the ones it no longer has are not named (see ``processors.base``).
        """
        st = _State.of(state)
        if st.whole:
            st.whole = False
            for c in st.cells.values():
                c.history.changed.clear()
                c.history.removed.clear()
            return st.main(), dict(st.parts()), True
        return st.main(), st.changes(), False

    def lookback(self, events: Sequence[Event], start_ns: int) -> dict[tuple[str, str], int]:
        """The cells with a tap from ``start_ns`` on whose previous tap is before it.

        Their samples are needed from the previous tap (less the gap limit, for the
        interval that holds it); the first tap of the periods is the one without them.
        """
        before: dict[tuple[str, str], int] = {}
        inside: dict[tuple[str, str], int] = {}
        for ev in events:
            if ev.type != "metal_tap" or ev.potline not in self._max_ns:
                continue
            key, t = (ev.potline, ev.cell), ev.ts_ns
            if t < start_ns:
                before[key] = max(before.get(key, t), t)
            else:
                inside[key] = min(inside.get(key, t), t)
        return {
            key: tap - self._gap_ns
            for key, tap in before.items()
            if key in inside and inside[key] - tap <= self._max_ns[key[0]]
        }

    def rebase(self, state: Any, fresh: Any, periods: Collection[PeriodId]) -> Any:
        """The live state with the minutes of these periods taken from the rebuilt one.

        A backfill that filled a gap of the cycle now running must count when that cycle
        ends: the live state goes on from the rebuilt minutes. Its taps stay as they are.
        """
        st, new = _State.of(state), _State.of(fresh)
        spans: dict[str, list[tuple[int, int]]] = {}
        for potline, kind, start in periods:
            spans.setdefault(potline, []).append(period_at(self.s.calendar, kind, start))
        for key, c in sorted(new.cells.items()):
            for a, b in spans.get(key.potline, []):
                live = st.cells.setdefault(key, CellTaps())
                live.history.splice(c.history, a, b)
        return st

    def _integrate(self, st: _State, batch: Batch) -> None:
        for sums in integrate(
            batch.samples, st.last, _GRID, _KINDS, self._gap_ns, counts=self._max_ns.__contains__
        ):
            for cell, q, s in zip(sums.cells, sums.charge_kah, sums.covered_s, strict=True):
                taps = st.cells.get((sums.potline, cell))  # type: ignore[call-overload]  # equal to its CellKey
                if taps is None:
                    taps = st.cells[CellKey(sums.potline, cell)] = CellTaps()
                taps.history.add(sums.start_ns, q, s)

    def _taps(self, st: _State, batch: Batch) -> set[CellKey]:
        """Take the batch's taps in time order; a tap at or before the newest one is ignored."""
        touched: set[CellKey] = set()
        taps = [ev for ev in batch.events if ev.type == "metal_tap" and ev.potline in self._max_ns]
        for ev in sorted(taps, key=lambda e: e.ts_ns):
            key = CellKey(ev.potline, ev.cell)
            c = st.cells.setdefault(key, CellTaps())
            if c.tap_ns is not None and ev.ts_ns <= c.tap_ns:
                continue
            if c.tap_ns is not None and ev.ts_ns - c.tap_ns <= self._max_ns[ev.potline]:
                c.waiting.append(Cycle(c.tap_ns, ev.ts_ns, MetalTap.of(ev).metal_kg))
            c.tap_ns = ev.ts_ns
            touched.add(key)
        return touched

    def _settle(self, st: _State, key: CellKey) -> list[Point]:
        """Write the cell's cycles its samples have passed, then forget what no cycle needs."""
        c = st.cells[key]
        last = st.last.get(key)
        newest = None if last is None else last.ts_ns
        max_ns = self._max_ns[key.potline]
        points = []
        if newest is not None:
            points = [cycle_point(key, w, c.history) for w in c.waiting if w.end_ns <= newest]
            c.waiting = [w for w in c.waiting if w.end_ns > newest]
        if c.tap_ns is not None:  # a cell whose samples stopped: its cycles wait so long
            c.waiting = [w for w in c.waiting if w.end_ns >= c.tap_ns - max_ns]
        if newest is not None:
            c.history.trim(self._floor(c, newest, max_ns))
        return points

    @staticmethod
    def _floor(c: CellTaps, newest: int, max_ns: int) -> int:
        """The earliest instant a cycle still to be written can start.

        A waiting cycle starts at its previous tap; the next cycle will start at the newest
        tap; before any tap, a tap may still be logged for any instant, and a cycle longer
        than the maximum gives no point, so the maximum behind the newest sample is kept.
        """
        if c.waiting:
            return min(w.start_ns for w in c.waiting)
        if c.tap_ns is None:
            return newest - max_ns
        return max(c.tap_ns, newest - max_ns)


def cycle_point(key: CellKey, cycle: Cycle, history: History) -> Point:
    """The ``tap_cycle`` point of a cycle whose samples are all in."""
    charge, covered_s = history.between(cycle.start_ns, cycle.end_ns)
    hours = (cycle.end_ns - cycle.start_ns) / HOUR_NS
    fields: dict[str, float | int | bool | str] = {
        "metal_kg": cycle.metal_kg,
        "charge_kah": charge,
        "hours": hours,
        "hours_covered": covered_s / 3600.0,
    }
    ce = cycle_ce(cycle.metal_kg, charge, hours, covered_s / 3600.0)
    if ce is not None:
        fields["ce"] = ce
    tags = (("potline", key.potline), ("cell", key.cell))
    return Point("tap_cycle", tags, fields, cycle.end_ns)


def cycle_ce(
    metal_kg: float, charge_kah: float, hours: float, hours_covered: float
) -> float | None:
    """Current efficiency of a cycle as a fraction; None without charge.

    The metal was made over the whole cycle, gaps in the samples included, so the charge is
    taken over the whole cycle: the covered charge at its mean current over the gaps.
    Without gaps this is metal / (0.33557 × charge).
    """
    if charge_kah <= 0 or hours_covered <= 0:
        return None
    return metal_kg / (FARADAY_KG_PER_KAH * charge_kah * hours / hours_covered)


def month_ce_pct(cycles: Iterable[Mapping[str, float]]) -> float | None:
    """A cell's current efficiency over some completed cycles (a month's), in percent.

    ``cycles`` are ``tap_cycle`` fields (``metal_kg``, ``charge_kah``, ``hours``,
    ``hours_covered``). The metal and the charges add up, each charge over its whole cycle
    as in ``cycle_ce``: a ratio of sums, not a mean of the cycles' ratios, so a long cycle
    weighs as much as the metal it made. None when no cycle has charge.
    """
    metal = charge = 0.0
    for f in cycles:
        if f["charge_kah"] > 0 and f["hours_covered"] > 0:
            metal += f["metal_kg"]
            charge += f["charge_kah"] * f["hours"] / f["hours_covered"]
    return 100.0 * metal / (FARADAY_KG_PER_KAH * charge) if charge > 0 else None
