"""States checkpointed before the period ledger, read into its JSON shape.

A journal written by the previous release holds states with "potline|kind|start" keys and
positional lists; dropping them at the upgrade would restart the month-to-date KPIs from
zero and rewrite the month's points with the smaller totals, so they are converted once,
on the first load. A state that has a ``ledger`` is already in the current shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Json = dict[str, Any]


def upgraded(state: Mapping[str, Any] | None, convert: Callable[[Mapping[str, Any]], Json]) -> Any:
    """The state in the current shape: as it is, converted by ``convert``, or None."""
    if not state or "ledger" in state:
        return state
    return convert(state)


def ledger(state: Mapping[str, Any], acc: Callable[[Any], Any]) -> Json:
    """Old ``periods`` and ``done`` as ledger JSON; ``acc`` gives (end, new accumulator)."""
    periods = []
    for key, old in state.get("periods", {}).items():
        potline, kind, start = key.split("|")
        end, value = acc(old)
        periods.append(
            {"potline": potline, "kind": kind, "start_ns": int(start), "end_ns": end, "acc": value}
        )
    done = [
        {"potline": mark.split("|")[0], "kind": mark.split("|")[1], "end_ns": end}
        for mark, end in state.get("done", {}).items()
    ]
    return {"periods": periods, "done": done}


def by_cell(old: Mapping[str, Any], value: Callable[[Any], Any]) -> Json:
    """An old map keyed "potline/cell" as ``{potline: {cell: value}}``."""
    out: Json = {}
    for key, v in old.items():
        potline, cell = key.split("/", 1)
        out.setdefault(potline, {})[cell] = value(v)
    return out


def last_samples(old: Mapping[str, Any]) -> Json:
    """Old ``last``: "potline/cell" -> [ts_ns, voltage_v, current_ka]."""
    return by_cell(old, lambda s: {"ts_ns": int(s[0]), "voltage_v": s[1], "current_ka": s[2]})


def anode_cycle(old: Mapping[str, Any]) -> dict[str, Any]:
    """The state of the previous release: "potline/cell/anode" keys, positional lists."""
    history: dict[str, Any] = {}
    for key, t in old.get("history", {}).items():
        potline, cell, anode = key.split("/")
        history.setdefault(potline, {}).setdefault(cell, {})[anode] = t
    names = ("changes", "known", "cycle_sum_days", "on_target", "target_block")
    pending = [
        {
            "position": [*key.split("/")[:2], int(key.split("/")[2])],
            "ts_ns": t_change,
            "pre_v": pre,
            "tags": tags,
            "fields": fields,
            "peak_v": peak,
            "left": bool(left),
        }
        for key, (_, t_change, pre, peak, left, tags, fields) in old.get("pending", {}).items()
    ]
    return {
        "history": history,
        "ledger": ledger(old, lambda a: (a[-1], dict(zip(names, a[:-1], strict=True)))),
        "levels": by_cell(
            old.get("levels", {}),
            lambda buckets: {b: {"sum_v": x[0], "samples": x[1]} for b, x in buckets.items()},
        ),
        "pending": pending,
        "newest": int(old.get("newest", 0)),
        "overdue_day": int(old.get("overdue_day", 0)),
    }
