"""The period ledger: the KPI periods a processor still adds to, and where closed ones end.

kWh/t, anode effects and anode changes all count into shifts, days and months the same
way: a period opens at its first contribution, takes contributions until it is closed
(its potline's data ``complete_grace_s`` past its end, or sooner by the processor's own
rule), and is then forgotten, with only a mark per potline and kind of where the newest
closed period ends, so that a late contribution to a closed period is refused and its
last point stands. Keeping that in one place, under typed keys, keeps the three processors
closing periods the same way, and their checkpointed state in one JSON shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Generic, NamedTuple, TypeVar

from processors.kpi.periods import Calendar, period_index

A = TypeVar("A")
V = TypeVar("V")


class CellKey(NamedTuple):
    """A cell, named as in its tags."""

    potline: str
    cell: str


_KEYS: dict[tuple[str, str], CellKey] = {}


def cell_keys(cells: Iterable[tuple[str, str]]) -> list[CellKey]:
    """The keys of these cells, each made once per process and then looked up.

    A batch names every cell it holds, and making a named tuple costs five dictionary
    lookups; the plant's cells are few enough to keep.
    """
    keys = _KEYS
    out = []
    for name in cells:
        key = keys.get(name)
        if key is None:
            key = keys[name] = CellKey(*name)
        out.append(key)
    return out


class PeriodKey(NamedTuple):
    """One period of a potline: its kind (shift, day, month) and UTC start."""

    potline: str
    kind: str
    start_ns: int


@dataclass(slots=True)
class Period(Generic[A]):
    """An open period: where it ends, and what the processor has counted in it."""

    end_ns: int
    acc: A


def period_at(calendar: Calendar, kind: str, t_ns: int) -> tuple[int, int]:
    """Start and end of the period of ``kind`` that holds ``t_ns``.

    Asked for event after event, mostly of the same period: the last answer per calendar
    and kind is kept, and a time inside it costs a comparison, not the 30 µs of a local
    date and a search (a recalculation's month of anode changes made 24,000 of them).
    """
    last = _LAST_PERIOD.get((calendar, kind))
    if last is not None and last[0] <= t_ns < last[1]:
        return last
    starts = calendar.starts(kind, t_ns, t_ns)
    k = int(period_index(starts, [t_ns])[0])
    found = _LAST_PERIOD[calendar, kind] = int(starts[k]), int(starts[k + 1])
    return found


_LAST_PERIOD: dict[tuple[Calendar, str], tuple[int, int]] = {}


@dataclass
class Ledger(Generic[A]):
    """Open periods, and per (potline, kind) the end of the newest closed one.

    Periods are walked and written in key order, never in the order they opened, so that
    neither the points' order nor the JSON depends on how the data was cut into batches.
    """

    periods: dict[PeriodKey, Period[A]] = field(default_factory=dict)
    done: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, key: PeriodKey, end_ns: int, new: Callable[[], A]) -> A | None:
        """The accumulator of an open period, opened with ``new()`` if need be; None if closed."""
        if end_ns <= self.done.get((key.potline, key.kind), 0):
            return None
        period = self.periods.get(key)
        if period is None:
            period = self.periods[key] = Period(end_ns, new())
        return period.acc

    def past_grace(self, key: PeriodKey, now_ns: int, grace_ns: int) -> bool:
        """Whether data at ``now_ns`` is ``grace_ns`` or more past the period's end."""
        return now_ns >= self.periods[key].end_ns + grace_ns

    def close(self, key: PeriodKey) -> None:
        """Forget the period; contributions to it or to any earlier one are refused."""
        end = self.periods.pop(key).end_ns
        mark = (key.potline, key.kind)
        self.done[mark] = max(self.done.get(mark, 0), end)

    def rebase(self, fresh: Ledger[A], keys: Iterable[PeriodKey]) -> None:
        """Take these periods from ``fresh``, a ledger rebuilt from their whole history.

        A period this ledger closed keeps its last point (the recalculation wrote it); one
        it has open, or has not reached yet, continues from what history holds; one history
        closed is closed here too, so that no later write undoes the recalculated point.
        """
        for key in keys:
            mark = (key.potline, key.kind)
            period = fresh.periods.get(key)
            if period is not None:
                if period.end_ns > self.done.get(mark, 0):
                    self.periods[key] = period
            elif key in self.periods and self.periods[key].end_ns <= fresh.done.get(mark, 0):
                self.close(key)

    def closed(self, key: PeriodKey, end_ns: int) -> bool:
        """Whether the period, ending at ``end_ns``, has been closed."""
        return key not in self.periods and self.done.get((key.potline, key.kind), 0) >= end_ns

    def put(self, key: PeriodKey, end_ns: int, acc: A, *, closed: bool) -> None:
        """The period's accumulator replaced by one built whole (a month from its days).

        Closed at once when ``closed``: its point is then the complete one.
        """
        self.periods[key] = Period(end_ns, acc)
        if closed:
            self.close(key)

    def items(self) -> Iterator[tuple[PeriodKey, Period[A]]]:
        """The open periods in key order; safe to ``close`` while iterating."""
        return iter(sorted(self.periods.items()))

    def to_json(self, acc: Callable[[A], Any]) -> dict[str, Any]:
        """The ledger as JSON data, each accumulator through ``acc``."""
        return {
            "periods": [
                {
                    "potline": k.potline,
                    "kind": k.kind,
                    "start_ns": k.start_ns,
                    "end_ns": p.end_ns,
                    "acc": acc(p.acc),
                }
                for k, p in self.items()
            ],
            "done": [
                {"potline": p, "kind": k, "end_ns": end}
                for (p, k), end in sorted(self.done.items())
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, acc: Callable[[Any], A]) -> Ledger[A]:
        """A ledger read back from ``to_json``'s data (None: empty), in new objects."""
        data = data or {}
        periods = {
            PeriodKey(p["potline"], p["kind"], p["start_ns"]): Period(p["end_ns"], acc(p["acc"]))
            for p in data.get("periods", [])
        }
        done = {(d["potline"], d["kind"]): d["end_ns"] for d in data.get("done", [])}
        return cls(periods, done)


def cells_to_json(values: Mapping[CellKey, V], to: Callable[[V], Any]) -> dict[str, Any]:
    """A map by cell as JSON: ``{potline: {cell: to(value)}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        out.setdefault(key.potline, {})[key.cell] = to(value)
    return out


def cells_from_json(data: Mapping[str, Any] | None, of: Callable[[Any], V]) -> dict[CellKey, V]:
    """The map ``cells_to_json`` wrote, each value through ``of``."""
    return {
        CellKey(potline, cell): of(value)
        for potline, cells in (data or {}).items()
        for cell, value in cells.items()
    }


def newest_by_potline(newest: Mapping[CellKey, int]) -> dict[str, int]:
    """Each potline's newest time over its cells' newest times."""
    out: dict[str, int] = {}
    for key, t in newest.items():
        out[key.potline] = max(out.get(key.potline, t), t)
    return out


def flat(obj: Any) -> dict[str, Any]:
    """A dataclass of numbers (and lists of them) as a JSON object.

    ``dataclasses.asdict`` deep-copies every value, a sixth of the worker's time on state
    checkpoints; the values here are numbers, and a list is copied once.
    """
    names = _NAMES.get(type(obj))
    if names is None:
        names = _NAMES[type(obj)] = tuple(f.name for f in fields(obj))
    return {
        name: (list(v) if type(v) is list else v) for name in names for v in (getattr(obj, name),)
    }


_NAMES: dict[type, tuple[str, ...]] = {}
