"""Anode changes against the target cycle and block type, and the anodes overdue today.

These are the contract's ``anode_change`` and ``anode_potline``, and ``anode_overdue``.

Each (potline, cell, anode position) remembers its last change in the processor state,
which is checkpointed with every batch: the cycle of the next change survives restarts,
and replaying older events seeds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from processors.model import Batch, Event, FieldValue, Point, SampleBatch
from processors.periods import KINDS, Calendar, period_index

NS = 1_000_000_000
DAY_NS = 86_400 * NS
# per period: changes, changes with a known cycle, sum of known cycles, on target, target block
CHANGES, KNOWN, CYCLE_SUM, ON_TARGET, TARGET_BLOCK = range(5)


@dataclass(frozen=True)
class AnodeTargets:
    """A potline's anode goals."""

    cycle_days: float = 31.0
    tolerance_days: float = 1.0
    block: str = "590"


@dataclass(frozen=True)
class Response:
    """How a cell's voltage response to a change is followed."""

    band_v: float = 0.05
    window_s: float = 8 * 3600.0
    pre_window_s: float = 600.0


@dataclass(frozen=True)
class AnodeSettings:
    """What the processor needs of the config."""

    calendar: Calendar
    targets: dict[str, AnodeTargets]
    complete_grace_s: float = 900.0
    kinds: tuple[str, ...] = KINDS
    response: Response = Response()


class AnodeCycleProcessor:
    """Cycle, deviation and on-target flag per change; potline shares per period."""

    name = "anodes"

    def __init__(self, settings: AnodeSettings) -> None:
        self.s = settings
        self._grace_ns = int(settings.complete_grace_s * NS)
        self._bucket_ns = int(settings.response.pre_window_s * NS)
        self._window_ns = int(settings.response.window_s * NS)

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Write each change, its potline's periods, and the overdue list once a day."""
        state = state or {}
        history: dict[str, int] = dict(state.get("history", {}))
        periods = {k: list(v) for k, v in state.get("periods", {}).items()}
        done: dict[str, int] = dict(state.get("done", {}))
        newest = int(state.get("newest", 0))
        points: list[Point] = []
        touched: set[str] = set()
        levels = {
            k: {b: list(v) for b, v in lv.items()} for k, lv in state.get("levels", {}).items()
        }
        pending = {k: list(v) for k, v in state.get("pending", {}).items()}
        cells = _cell_samples(batch)
        for ev in sorted(
            (e for e in batch.events if e.type == "anode_change"), key=lambda e: e.ts_ns
        ):
            point = self._change(ev, history, periods, done, touched)
            points.append(point)
            key = f"{ev.potline}/{ev.cell}"
            pre = _level(levels.get(key, {}), cells.get(key), ev.ts_ns, self._bucket_ns)
            if pre is not None:
                pending[f"{key}/{ev.data['anode']}/{ev.ts_ns}"] = [
                    key,
                    ev.ts_ns,
                    pre,
                    0.0,
                    0,
                    [list(t) for t in point.tags],
                    point.fields,
                ]
        points += self._follow(pending, cells)
        _update_levels(levels, batch.samples, self._bucket_ns)
        newest = max([newest, *(e.ts_ns for e in batch.events)])
        if len(batch.samples):
            newest = max(newest, int(batch.samples.ts_ns.max()))
        for key in sorted(touched):
            points.append(self._potline_point(key, periods[key]))
        self._close(periods, done, newest)
        last_day = int(state.get("overdue_day", 0))
        day = self._day_start(newest) if newest else 0
        if day > last_day:
            points.extend(self._overdue(history, newest, day))
        new_state = {
            "levels": levels,
            "pending": pending,
            "history": history,
            "periods": periods,
            "done": done,
            "newest": newest,
            "overdue_day": max(day, last_day),
        }
        return new_state, points

    def _change(
        self,
        ev: Event,
        history: dict[str, int],
        periods: dict[str, list[Any]],
        done: dict[str, int],
        touched: set[str],
    ) -> Point:
        anode, block = int(ev.data["anode"]), str(ev.data["block"])
        key = f"{ev.potline}/{ev.cell}/{anode}"
        previous = history.get(key)
        target = self.s.targets.get(ev.potline, AnodeTargets())
        fields: dict[str, FieldValue] = {"target_days": target.cycle_days}
        cycle = None
        if previous is None or ev.ts_ns > previous:
            history[key] = ev.ts_ns
            if previous is not None:
                cycle = (ev.ts_ns - previous) / DAY_NS
        if cycle is not None:
            deviation = cycle - target.cycle_days
            fields["cycle_days"] = cycle
            fields["deviation_days"] = deviation
            fields["on_target"] = abs(deviation) <= target.tolerance_days
        if "butt_mm" in ev.data:
            fields["butt_mm"] = float(ev.data["butt_mm"])
        on_target = bool(fields.get("on_target", False))
        for kind in self.s.kinds:
            starts = self.s.calendar.starts(kind, ev.ts_ns, ev.ts_ns)
            k = int(period_index(starts, [ev.ts_ns])[0])
            start, end = int(starts[k]), int(starts[k + 1])
            if end <= done.get(f"{ev.potline}|{kind}", 0):
                continue  # a closed period keeps its counts
            pkey = f"{ev.potline}|{kind}|{start}"
            acc = periods.setdefault(pkey, [0, 0, 0.0, 0, 0, end])
            acc[CHANGES] += 1
            acc[TARGET_BLOCK] += int(block == target.block)
            if cycle is not None:
                acc[KNOWN] += 1
                acc[CYCLE_SUM] += cycle
                acc[ON_TARGET] += int(on_target)
            touched.add(pkey)
        tags = (("potline", ev.potline), ("cell", ev.cell), ("anode", str(anode)), ("block", block))
        return Point("anode_change", tags, fields, ev.ts_ns)

    def _follow(self, pending: dict[str, list[Any]], cells: dict[str, Any]) -> list[Point]:
        """Peak deviation and recovery of each followed change; written once known.

        Recovered means back within the band after having left it; a response that never
        leaves the band is written with its peak and no recovery when the window ends.
        """
        band = self.s.response.band_v
        points = []
        for pkey in list(pending):
            cell_key, t_change, pre, peak, left, tags, fields = pending[pkey]
            t, v = cells.get(cell_key, (np.zeros(0, np.int64), np.zeros(0)))
            after = (t > t_change) & (t <= t_change + self._window_ns)
            t, dev = t[after], np.abs(v[after] - pre)
            outside = dev > band
            recovered_at = None
            if left or outside.any():
                first_out = 0 if left else int(np.argmax(outside))
                back = np.flatnonzero(~outside[first_out:])
                stop = first_out + int(back[0]) if len(back) else len(t)
                peak = max(peak, float(dev[:stop].max()) if stop else 0.0)
                left = 1
                recovered_at = int(t[stop]) if len(back) else None
            elif len(dev):
                peak = max(peak, float(dev.max()))
            newest = cells[cell_key][0] if cell_key in cells else None
            window_over = newest is not None and int(newest[-1]) >= t_change + self._window_ns
            if recovered_at is None and not window_over:
                pending[pkey] = [cell_key, t_change, pre, peak, left, tags, fields]
                continue
            del pending[pkey]
            done_fields = {**fields, "peak_dev_mv": peak * 1000.0}
            if recovered_at is not None:
                done_fields["recovery_min"] = (recovered_at - t_change) / NS / 60.0
            points.append(
                Point("anode_change", tuple(tuple(x) for x in tags), done_fields, t_change)
            )
        return points

    def _potline_point(self, key: str, acc: list[Any]) -> Point:
        potline, kind, start = key.split("|")
        fields: dict[str, FieldValue] = {
            "changes": acc[CHANGES],
            "target_block_share_pct": 100.0 * acc[TARGET_BLOCK] / acc[CHANGES],
        }
        if acc[KNOWN]:
            fields["mean_cycle_days"] = acc[CYCLE_SUM] / acc[KNOWN]
            fields["on_target_pct"] = 100.0 * acc[ON_TARGET] / acc[KNOWN]
        tags = (("potline", potline), ("period", kind))
        return Point("anode_potline", tags, fields, int(start))

    def _close(self, periods: dict[str, list[Any]], done: dict[str, int], newest: int) -> None:
        """Forget periods long past: their last point stands."""
        for key in [k for k, acc in periods.items() if newest >= acc[-1] + self._grace_ns]:
            potline, kind, _ = key.split("|")
            end = periods.pop(key)[-1]
            done[f"{potline}|{kind}"] = max(done.get(f"{potline}|{kind}", 0), end)

    def _day_start(self, t_ns: int) -> int:
        starts = self.s.calendar.starts("day", t_ns, t_ns)
        return int(starts[int(period_index(starts, [t_ns])[0])])

    def _overdue(self, history: dict[str, int], now: int, day: int) -> list[Point]:
        """The positions whose last change is older than the target cycle and tolerance."""
        points = []
        for key, last in sorted(history.items()):
            potline, cell, anode = key.split("/")
            target = self.s.targets.get(potline, AnodeTargets())
            age = (now - last) / DAY_NS
            late = age - target.cycle_days - target.tolerance_days
            if late > 0:
                tags = (("potline", potline), ("cell", cell), ("anode", anode))
                fields: dict[str, FieldValue] = {"days_since_change": age, "overdue_days": late}
                points.append(Point("anode_overdue", tags, fields, day))
        return points


def _cell_samples(batch: Batch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each cell's (ts, voltage) of the batch, in time order."""
    names = batch.samples.cells
    return {f"{names[c][0]}/{names[c][1]}": (t, v) for c, t, v in batch.samples.by_cell()}


def _level(
    buckets: dict[str, list[float]], samples: Any, t_change: int, bucket_ns: int
) -> float | None:
    """Mean voltage over the current and the previous pre-window bucket before a change."""
    first = t_change // bucket_ns - 1
    total = sum(s for b, (s, _) in buckets.items() if int(b) >= first)
    count = sum(n for b, (_, n) in buckets.items() if int(b) >= first)
    if samples is not None:
        t, v = samples
        inside = (t < t_change) & (t // bucket_ns >= first)
        total += float(v[inside].sum())
        count += int(inside.sum())
    return total / count if count else None


def _update_levels(
    levels: dict[str, dict[str, list[float]]], samples: SampleBatch, bucket_ns: int
) -> None:
    """Add the batch to each cell's pre-window buckets, keeping the newest two.

    One sort for the whole batch: per-cell numpy calls would cost more than the sums once
    a batch spreads a few samples over hundreds of cells.
    """
    if not len(samples):
        return
    bucket = samples.ts_ns // bucket_ns
    order = np.lexsort((bucket, samples.cell_id))
    code, b, v = samples.cell_id[order], bucket[order], samples.voltage_v[order]
    starts = np.flatnonzero(np.r_[True, (code[1:] != code[:-1]) | (b[1:] != b[:-1])])
    sums = np.add.reduceat(v, starts)
    counts = np.diff(np.r_[starts, len(code)])
    names = samples.cells
    touched = set()
    for c, k, total, n in zip(
        code[starts].tolist(), b[starts].tolist(), sums.tolist(), counts.tolist(), strict=True
    ):
        key = f"{names[c][0]}/{names[c][1]}"
        acc = levels.setdefault(key, {}).setdefault(str(k), [0.0, 0])
        acc[0] += total
        acc[1] += n
        touched.add(key)
    for key in touched:
        buckets = levels[key]
        for old in sorted(buckets, key=int)[:-2]:
            del buckets[old]
