"""A potline's raw history read back from the database, as the batches the engine makes.

The database holds every accepted sample and event, live and replayed, each series and
timestamp once (a sample written twice is one point), so it is the one place where a
period's complete data can be found after a backfill.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from collector.engine.batch import empty_batch
from collector.sinks.influxql import InfluxQL, quoted
from processors.model import Batch, Event, Point, SampleBatch

EVENT_TAGS = ("potline", "cell", "type")


class History:
    """Samples and events of one potline between two instants, in time order."""

    def __init__(self, query: InfluxQL) -> None:
        self.query = query

    def batches(self, potline: str, t0_ns: int, t1_ns: int, step_ns: int) -> Iterator[Batch]:
        """The batches of consecutive windows of ``step_ns`` in [t0, t1).

        Events and samples of a window travel together, as they would in a live batch. The
        next window is read while the caller processes this one: the database takes as long
        to answer as the processors take to run.
        """
        windows = [(a, min(a + step_ns, t1_ns)) for a in range(t0_ns, t1_ns, step_ns)]
        with ThreadPoolExecutor(1, thread_name_prefix="history") as reader:
            ahead = [reader.submit(self._batch, potline, a, b) for a, b in windows[:1]]
            for k in range(len(windows)):
                batch = ahead.pop().result()
                ahead += [
                    reader.submit(self._batch, potline, a, b) for a, b in windows[k + 1 :][:1]
                ]
                yield batch

    def _batch(self, potline: str, t0_ns: int, t1_ns: int) -> Batch:
        return Batch(self.samples(potline, t0_ns, t1_ns), self.events(potline, t0_ns, t1_ns))

    def samples(
        self, potline: str, t0_ns: int, t1_ns: int, *, cell: str | None = None
    ) -> SampleBatch:
        """Voltage and current of every cell of the potline (or one) in [t0, t1), in order."""
        one = "" if cell is None else f'AND "cell" = {quoted(cell)} '
        series = self.query.series(
            'SELECT "voltage_v", "current_ka" FROM "cell" '
            f'WHERE "potline" = {quoted(potline)} {one}AND time >= {t0_ns} AND time < {t1_ns} '
            'GROUP BY "cell"'
        )
        cells: list[tuple[str, str]] = []
        times, values = [], []
        for s in series:
            t, vi = _columns(s["values"])
            ok = ~np.isnan(vi).any(axis=1)
            if ok.any():
                cells.append((potline, s["tags"]["cell"]))
                times.append(t[ok])
                values.append(vi[ok])
        if not cells:
            return empty_batch()
        ts = np.concatenate(times)
        code = np.concatenate([np.full(len(t), k, np.int64) for k, t in enumerate(times)])
        vi = np.concatenate(values)
        order = np.argsort(ts, kind="stable")
        return SampleBatch(
            cells=cells,
            cell_id=code[order],
            ts_ns=ts[order],
            voltage_v=vi[order, 0],
            current_ka=vi[order, 1],
            extra=[None] * len(order),
        )

    def events(
        self, potline: str, t0_ns: int, t1_ns: int, of_type: str | None = None
    ) -> list[Event]:
        """Every event of the potline in [t0, t1) (of one type), in time order, with its fields."""
        only = "" if of_type is None else f' AND "type" = {quoted(of_type)}'
        rows = self.query.rows(
            f'SELECT * FROM "cell_event" WHERE "potline" = {quoted(potline)}{only} '
            f"AND time >= {t0_ns} AND time < {t1_ns}"
        )
        events = [_event(potline, row) for row in rows]
        events.sort(key=lambda ev: ev.ts_ns)
        return events

    def stored(
        self, measurement: str, potline: str, t0_ns: int, t1_ns: int, *, where: str = ""
    ) -> list[Point]:
        """The points of a measurement of the potline in [t0, t1), tags sorted by key.

        ``where``: more conditions, each followed by ``AND``.
        """
        series = self.query.series(
            f'SELECT * FROM "{measurement}" WHERE "potline" = {quoted(potline)} '
            f"AND {where}time >= {t0_ns} AND time < {t1_ns} GROUP BY *"
        )
        out = []
        for s in series:
            tags = tuple(sorted((k, v) for k, v in s.get("tags", {}).items() if v))
            names = s["columns"][1:]
            for row in s["values"]:
                fields = {n: v for n, v in zip(names, row[1:], strict=True) if v is not None}
                out.append(Point(measurement, tags, fields, int(row[0])))
        return out

    def days(self, measurement: str, potline: str, t0_ns: int, t1_ns: int) -> list[Point]:
        """The stored ``period=day`` points of a measurement of the potline in [t0, t1).

        What a month is summed from: a few thousand points where its raw samples are a
        billion.
        """
        return self.stored(measurement, potline, t0_ns, t1_ns, where="\"period\" = 'day' AND ")


def _columns(rows: list[list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The time (ns need all 64 bits) and the two values (null: NaN) of a series' rows.

    One conversion of the whole table at once; the row by row one only when a value is null.
    """
    table = np.array(rows, dtype=object).reshape(-1, 3)
    try:
        values = table[:, 1:].astype(np.float64)
    except TypeError:
        values = np.array([r[1:3] for r in rows], dtype=np.float64).reshape(-1, 2)
    return table[:, 0].astype(np.int64), values


def _event(potline: str, row: dict[str, Any]) -> Event:
    """An event as the journal held it: the raw point's fields are its data.

    The raw point stores numbers as floats; the anode position is an integer again.
    """
    data = {k: v for k, v in row.items() if v is not None and k not in ("time", *EVENT_TAGS)}
    data.pop("seen", None)  # the placeholder field of an event with no data
    if type(data.get("anode")) is float and data["anode"].is_integer():
        data["anode"] = int(data["anode"])
    return Event(potline, str(row["cell"]), int(row["time"]), str(row["type"]), data)
