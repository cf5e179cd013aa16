"""Alarms: a field beyond a limit for long enough, or a cell that stopped reporting.

This is the ``alarm`` measurement: tags potline, cell, rule, severity; fields ``state``
(``"raised"`` or ``"cleared"``) and ``value``; one point per transition, at the time of the
sample that caused it.

A limit alarm (``above``, ``below`` or ``outside`` a band) is raised at the first sample at
which its condition has held for ``hold_s`` of event time, that is when every sample of the
cell since the first one that satisfied it satisfied it too; ``hold_s: 0`` raises at that
first sample. It clears at the first sample that no longer satisfies it. A sample without
the field is ignored by the alarm: bath temperature comes less often than voltage, and its
absence says nothing about the limit. Each cell's samples are taken in time order and the
state per (rule, cell) is when the condition started to hold and whether the alarm is
raised, so batches, restarts and reloads may cut a hold anywhere.

A stale alarm is raised for a cell that sent nothing for ``stale_s`` of event time, judged
against the newest sample of its potline, so that a replay judges like live and a slow
consumer raises nothing spurious. A potline that falls silent as a whole (broker down)
advances no time and raises nothing: the self-metrics show that case. A cell is known once
it sent a sample. Samples are taken in arrival order, because silence is about what reached
cellmon, and that order is the same however the stream is cut into batches. The raise is
stamped at the instant the cell became stale (its last sample + ``stale_s``, value
``stale_s``); the clear at its next sample, with the seconds it was silent as the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from processors.model import OFFLINE, Batch, Event, Point, SampleBatch
from processors.ordering import grouped_cummax
from processors.rules.alarm_rules import (
    CLEARED,
    COLUMNS,
    MEASUREMENT,
    NEVER,
    NS,
    RAISED,
    Alarm,
    AlarmRule,
    Limit,
    alarm_point,
)

__all__ = ["MEASUREMENT", "AlarmProcessor", "AlarmRule", "standing"]


def standing(state: Any) -> dict[tuple[str, str], list[str]]:
    """(potline, cell) → the rules of its alarms raised now, from a checkpointed state.

    A batch with a transition is checkpointed at once (its alerts page), so this is exactly
    what the ``alarm`` points say, without reading them back (the demo's live view).
    """
    raised: dict[tuple[str, str], list[str]] = {}
    for rule, entries in sorted((state or {}).get("alarms", {}).items()):
        for key, (_, up) in entries.items():
            if up:
                potline, cell = key.split("/", 1)
                raised.setdefault((potline, cell), []).append(rule)
    return raised


class AlarmProcessor:
    """Raises and clears alarms; writes each transition as an ``alarm`` point.

    State: ``{"last": {"potline/cell": ts_ns}, "alarms": {rule: {"potline/cell": [since_ns
    or None, raised]}}, "severity": {rule: severity}}``; a (rule, cell) with no condition
    holding has no entry. When the rules are reloaded, an alarm raised under a rule that is
    gone, or whose severity changed, is cleared (without a value) at the batch's newest
    sample, so that no board shows it raised for ever; a rule whose limits changed keeps
    its state and is judged by the new limits from the next sample on.
    """

    name = "alarms"

    def __init__(
        self,
        rules: Sequence[AlarmRule],
        settings: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        """Compile the rules once; ``settings`` gives each potline's values of named limits."""
        alarms = [Alarm.of(rule) for rule in rules]
        self._limits = [a for a in alarms if not a.is_stale]
        self._stale = [a for a in alarms if a.is_stale]
        self._severity = {a.name: a.severity for a in alarms}
        self._settings = settings or {}

    def alerts(self, points: list[Point]) -> list[Point]:
        """Every transition it wrote pages (``processors.base.Alerting``)."""
        return [p for p in points if p.measurement == MEASUREMENT]

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """The transitions of this batch in time order; derived fields are read from ``extra``."""
        state = state or {}
        sb = batch.samples
        offline = [e for e in batch.events if e.type == OFFLINE] if self._stale else []
        if not len(sb):
            return self._offline_only(state, offline) if offline else (state, [])
        last = dict(state.get("last", {}))
        previous = state.get("alarms", {})
        was = state.get("severity", {})
        points = _retired(previous, was, self._severity, sb)
        alarms = {
            name: dict(previous.get(name, {})) if was.get(name, severity) == severity else {}
            for name, severity in self._severity.items()
        }
        keys = [f"{potline}/{cell}" for potline, cell in sb.cells]
        columns: dict[str, np.ndarray] = {}
        for alarm in self._limits:
            if alarm.field not in columns:
                columns[alarm.field] = _column(sb, alarm.field)
            points += _limit(alarm, sb, keys, columns[alarm.field], alarms[alarm.name], self._limit)
        if self._stale:
            points += _Silence(sb, keys, last).points(self._stale, alarms)
        else:
            _advance(last, sb, keys)
        points += self._offline(offline, last, alarms)
        points.sort(key=lambda p: p.time_ns)  # in the order they happened, for a notifier
        return {"last": last, "alarms": alarms, "severity": self._severity}, points

    def _offline_only(self, state: Any, offline: list[Event]) -> tuple[Any, list[Point]]:
        """A batch of events alone: only the deaths; rule changes wait for samples."""
        alarms = {name: dict(entries) for name, entries in state.get("alarms", {}).items()}
        stale = [a for a in self._stale if a.name in alarms or not state]
        for alarm in stale:
            alarms.setdefault(alarm.name, {})
        points = self._offline(offline, state.get("last", {}), alarms, stale)
        return {**state, "alarms": alarms}, points

    def _offline(
        self,
        events: list[Event],
        last: dict[str, int],
        alarms: dict[str, dict[str, Any]],
        rules: list[Alarm] | None = None,
    ) -> list[Point]:
        """A cell its gateway said went offline (a Sparkplug death) is stale at once.

        Its next sample clears the alarm, as after a silence.
        """
        points = []
        for ev in events:
            key = f"{ev.potline}/{ev.cell}"
            if ev.ts_ns < last.get(key, NEVER):
                continue  # the cell sent again since
            for alarm in self._stale if rules is None else rules:
                entries = alarms[alarm.name]
                if key not in entries and alarm.applies(ev.potline, ev.cell):
                    entries[key] = [None, True]
                    points.append(alarm.point((ev.potline, ev.cell), RAISED, 0.0, ev.ts_ns))
        return points

    def _limit(self, limit: Limit, sb: SampleBatch, code: np.ndarray) -> Any:
        """A limit's value for each of the rows of cells ``code``: a number, or a setting."""
        if not isinstance(limit, str):
            return limit
        per_cell = [self._settings.get(potline, {}).get(limit, np.nan) for potline, _ in sb.cells]
        return np.array(per_cell, dtype=np.float64)[code]


def _retired(
    previous: Mapping[str, Mapping[str, Any]],
    was: Mapping[str, str],
    now: Mapping[str, str],
    sb: SampleBatch,
) -> list[Point]:
    """Clears for the raised alarms of rules that are gone or changed severity."""
    at = int(sb.ts_ns.max())
    points = []
    for rule, entries in previous.items():
        severity = was.get(rule)
        if severity is None or now.get(rule) == severity:
            continue
        for key, (_, raised) in entries.items():
            if raised:
                potline, cell = key.split("/", 1)
                points.append(alarm_point((potline, cell), rule, severity, CLEARED, None, at))
    return points


def _column(sb: SampleBatch, field: str) -> np.ndarray:
    if field in COLUMNS:
        return np.asarray(getattr(sb, COLUMNS[field]), dtype=np.float64)
    values = (e.get(field, np.nan) if e else np.nan for e in sb.extra)
    return np.fromiter(values, dtype=np.float64, count=len(sb))


def _limit(
    alarm: Alarm,
    sb: SampleBatch,
    keys: list[str],
    values: np.ndarray,
    entries: dict[str, Any],
    limit: Callable[[Limit, SampleBatch, np.ndarray], Any],
) -> list[Point]:
    """Transitions of one limit alarm; updates its ``entries`` (rule state per cell).

    Only the cells with the condition true somewhere in the batch, or holding from before,
    are walked: in a healthy potline that is none of them.
    """
    rows = np.flatnonzero(alarm.scope(sb.cells)[sb.cell_id] & ~np.isnan(values))
    if not len(rows):
        return []
    rows = rows[np.lexsort((sb.ts_ns[rows], sb.cell_id[rows]))]
    code, t, v = sb.cell_id[rows], sb.ts_ns[rows], values[rows]
    holds = alarm.holds(v, lambda lim: limit(lim, sb, code))
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    if entries:
        open_before = np.array([keys[c] in entries for c in code[starts].tolist()], dtype=bool)
    else:  # the usual case: no cell holds the condition from before
        open_before = np.zeros(len(starts), dtype=bool)
    busy = np.logical_or.reduceat(holds, starts) | open_before
    points = []
    for lo, hi in zip(starts[busy].tolist(), ends[busy].tolist(), strict=True):
        c = int(code[lo])
        since, raised = entries.pop(keys[c], (None, False))
        since, raised, events = _transitions(t[lo:hi], holds[lo:hi], since, raised, alarm.hold_ns)
        points += [alarm.point(sb.cells[c], s, v[lo + k], t[lo + k]) for s, k in events]
        if since is not None:
            entries[keys[c]] = [since, raised]
    return points


def _transitions(
    t: np.ndarray, holds: np.ndarray, since: int | None, raised: bool, hold_ns: int
) -> tuple[int | None, bool, list[tuple[str, int]]]:
    """Walk one cell's samples, in time order, run by run of the condition holding.

    ``since`` is when the condition started to hold (None: it does not hold), from the state
    before these samples. Returns the state after them and the (state, index) transitions.
    """
    events: list[tuple[str, int]] = []
    if since is not None and not holds[0]:
        if raised:
            events.append((CLEARED, 0))
        since, raised = None, False
    edges = np.flatnonzero(np.diff(np.r_[0, holds.astype(np.int8), 0])).tolist()
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if since is None or start > 0:
            since, raised = int(t[start]), False
        if not raised:
            k = start + int(np.searchsorted(t[start:end], since + hold_ns))
            if k < end:
                events.append((RAISED, k))
                raised = True
        if end < len(holds):
            if raised:
                events.append((CLEARED, end))
            since, raised = None, False
    return since, raised, events


class _Silence:
    """Each sample's view of its cell's and its potline's past, in arrival order.

    ``previous[i]`` is the newest earlier sample of row i's cell and ``newest[i]`` that of
    its potline (``NEVER`` for none); ``last`` is updated to the end of the batch.
    """

    def __init__(self, sb: SampleBatch, keys: list[str], last: dict[str, int]) -> None:
        self.sb, self.keys, self.last = sb, keys, last
        potlines = sorted({potline for potline, _ in sb.cells})
        code = {potline: k for k, potline in enumerate(potlines)}
        cell_potline = np.array([code[potline] for potline, _ in sb.cells], dtype=np.int64)
        known = _newest_by_potline(last)
        cell_prior = np.array([last.get(k, NEVER) for k in keys], dtype=np.int64)
        potline_prior = np.array([known.get(p, NEVER) for p in potlines], dtype=np.int64)
        self.previous = _running_before(sb.cell_id, sb.ts_ns, cell_prior)
        self.newest = _running_before(cell_potline[sb.cell_id], sb.ts_ns, potline_prior)
        self.first = np.zeros(len(sb), dtype=bool)
        self.first[np.unique(sb.cell_id, return_index=True)[1]] = True
        _advance(last, sb, keys, cell_prior)
        # each potline's newest after the batch: its newest before, or the batch's
        batch_newest = np.full(len(potlines), NEVER, dtype=np.int64)
        np.maximum.at(batch_newest, cell_potline[sb.cell_id], sb.ts_ns)
        after = np.maximum(batch_newest, potline_prior).tolist()
        self.newest_after = {**known, **dict(zip(potlines, after, strict=True))}

    def points(self, rules: list[Alarm], alarms: dict[str, dict[str, Any]]) -> list[Point]:
        """The transitions of the stale rules; updates their entries in ``alarms``."""
        points: list[Point] = []
        for alarm in rules:
            points += self._within(alarm, alarms[alarm.name])
            points += self._at_end(alarm, alarms[alarm.name])
        return points

    def _within(self, alarm: Alarm, entries: dict[str, Any]) -> list[Point]:
        """A cell's sample clears its stale alarm, raised before it or in this batch."""
        sb, stale_ns = self.sb, int(alarm.stale_s * NS)
        if entries:
            was_raised = np.array([k in entries for k in self.keys], dtype=bool)[sb.cell_id]
        else:
            was_raised = np.zeros(len(sb), dtype=bool)
        was_raised &= self.first
        seen = self.previous != NEVER
        gap = self.newest - np.where(seen, self.previous, self.newest)
        stale = alarm.scope(sb.cells)[sb.cell_id] & seen & (gap >= stale_ns)
        points = []
        for i in np.flatnonzero(stale | was_raised).tolist():
            where, before = sb.cells[sb.cell_id[i]], int(self.previous[i])
            if not was_raised[i]:
                points.append(alarm.point(where, RAISED, alarm.stale_s, before + stale_ns))
            points.append(alarm.point(where, CLEARED, (sb.ts_ns[i] - before) / NS, sb.ts_ns[i]))
        for c in np.unique(sb.cell_id).tolist():
            entries.pop(self.keys[c], None)
        return points

    def _at_end(self, alarm: Alarm, entries: dict[str, Any]) -> list[Point]:
        """Every known cell that is silent for ``stale_s`` at the end of the batch."""
        stale_ns = int(alarm.stale_s * NS)
        newest = self.newest_after
        points = []
        # a cell newer than this is not stale in any potline: most are, and are not split
        cut = max(newest.values(), default=NEVER) - stale_ns
        for key, ts in [(k, ts) for k, ts in self.last.items() if ts <= cut]:
            potline, cell = key.split("/", 1)
            if key in entries or newest[potline] - ts < stale_ns:
                continue
            if alarm.applies(potline, cell):
                points.append(alarm.point((potline, cell), RAISED, alarm.stale_s, ts + stale_ns))
                entries[key] = [None, True]
        return points


def _advance(
    last: dict[str, int], sb: SampleBatch, keys: list[str], prior: np.ndarray | None = None
) -> None:
    """Move each cell's newest sample time in ``last`` to the end of the batch.

    ``prior``: the cells' times in ``last`` before the batch, when the caller has them.
    """
    if prior is None:
        prior = np.array([last.get(k, NEVER) for k in keys], dtype=np.int64)
    newest = prior.copy()
    np.maximum.at(newest, sb.cell_id, sb.ts_ns)
    present = np.unique(sb.cell_id)
    last.update(zip([keys[c] for c in present.tolist()], newest[present].tolist(), strict=True))


def _running_before(group: np.ndarray, ts: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per row, the newest ``ts`` of the earlier rows of its group, or the group's prior."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    running = grouped_cummax(np.maximum(ts[order], prior[g]), g)
    before = np.empty(len(g), dtype=np.int64)
    before[1:] = running[:-1]
    starts = np.r_[True, g[1:] != g[:-1]]
    before[starts] = prior[g[starts]]
    out = np.empty_like(before)
    out[order] = before
    return out


def _newest_by_potline(last: dict[str, int]) -> dict[str, int]:
    """Each potline's newest time over its cells' (``last`` is keyed ``potline/cell``).

    Run on every cell every batch: each key's potline is split off once per process.
    """
    newest: dict[str, int] = {}
    potline_of = _POTLINE_OF
    if len(potline_of) > _POTLINES_KEPT:
        potline_of.clear()
    for key, ts in last.items():
        potline = potline_of.get(key)
        if potline is None:
            potline = potline_of[key] = key.split("/", 1)[0]
        before = newest.get(potline)
        if before is None or ts > before:
            newest[potline] = ts
    return newest


_POTLINE_OF: dict[str, str] = {}
_POTLINES_KEPT = 1_000_000
