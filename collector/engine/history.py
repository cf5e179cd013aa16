"""A potline's raw history read back from the database, as the batches the engine makes.

The database holds every accepted sample and event, live and replayed, each series and
timestamp once (a sample written twice is one point), so it is the one place where a
period's complete data can be found after a backfill.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from itertools import islice
from typing import Any, TypeVar

import numpy as np

from collector.engine.batch import empty_batch
from collector.sinks.influxql import InfluxQL, quoted
from processors.model import Batch, Event, Point, SampleBatch

EVENT_TAGS = ("potline", "cell", "type")
COLUMNS = {"tags": "category", "time": "int64", "voltage_v": "float64", "current_ka": "float64"}
AHEAD = 2
GROUPED_CELL_S = 400 * 3600
NS = 1_000_000_000
T = TypeVar("T")
ESCAPED = re.compile(r"\\([,= ])")
Windows = dict[tuple[tuple[str, str], int, int], SampleBatch]
"""Samples by ((potline, cell), t0, t1)."""


class History:
    """Samples and events of one potline between two instants, in time order."""

    def __init__(self, query: InfluxQL) -> None:
        self.query = query

    def batches(self, potline: str, t0_ns: int, t1_ns: int, step_ns: int) -> Iterator[Batch]:
        """The batches of consecutive windows of ``step_ns`` in [t0, t1).

        Events and samples of a window travel together, as they would in a live batch. The
        first windows are asked for at once, before the caller takes them (it reads the
        cells' earlier samples meanwhile), and the next while the caller processes this
        one: the database takes as long to answer as the processors take to run.
        """
        windows = [(a, min(a + step_ns, t1_ns)) for a in range(t0_ns, t1_ns, step_ns)]
        return _in_order([partial(self._batch, potline, a, b) for a, b in windows])

    def each(self, windows: Sequence[tuple[tuple[str, str], int, int]]) -> Iterator[SampleBatch]:
        """The samples of each ((potline, cell), t0, t1), in order.

        A few cells' samples around the periods are many short queries. Cells with the
        same window (those tapped in the same hour, every cell's minutes before a day) are
        read by one query, up to ``GROUPED_CELL_S`` of cell time (an hour of a 400-cell
        potline, what one of ``batches`` holds); the database answers the next while the
        caller processes this one. A query per cell was 545 queries to recalculate a day of
        a 400-cell potline (1,090 where a cell had no samples there: an empty answer is
        asked again for its error), a second of the processing thread's time.
        """
        groups: dict[tuple[str, int, int], list[list[str]]] = {}
        for (potline, cell), a, b in windows:
            group = groups.setdefault((potline, a, b), [[]])
            if len(group[-1]) * (b - a) >= GROUPED_CELL_S * NS:
                group.append([])
            group[-1].append(cell)
        reads: list[Callable[[], Windows]] = [
            partial(self._read_cells, p, a, b, cells)
            for (p, a, b), parts in groups.items()
            for cells in parts
        ]
        return _by_window(list(windows), _in_order(reads))

    def _batch(self, potline: str, t0_ns: int, t1_ns: int) -> Batch:
        return Batch(self.samples(potline, t0_ns, t1_ns), self.events(potline, t0_ns, t1_ns))

    def _read_cells(self, potline: str, t0_ns: int, t1_ns: int, cells: list[str]) -> Windows:
        """The samples of these cells in [t0, t1), by window: one query, a batch per cell."""
        both = self.samples(potline, t0_ns, t1_ns, cells=cells)
        out = {((potline, c), t0_ns, t1_ns): empty_batch() for c in cells}
        if not both.cells:
            return out
        if len(both.cells) == 1:
            out[(both.cells[0], t0_ns, t1_ns)] = both
            return out
        order = np.argsort(both.cell_id, kind="stable")  # each cell's samples stay in order
        ends = np.cumsum(np.bincount(both.cell_id, minlength=len(both.cells))).tolist()
        for cell, lo, hi in zip(both.cells, [0, *ends[:-1]], ends, strict=True):
            rows = order[lo:hi]
            out[(cell, t0_ns, t1_ns)] = SampleBatch(
                cells=[cell],
                cell_id=np.zeros(len(rows), np.int64),
                ts_ns=both.ts_ns[rows],
                voltage_v=both.voltage_v[rows],
                current_ka=both.current_ka[rows],
                extra=[None] * len(rows),
            )
        return out

    def samples(
        self, potline: str, t0_ns: int, t1_ns: int, *, cells: Sequence[str] | None = None
    ) -> SampleBatch:
        """Voltage and current of every cell of the potline (or these) in [t0, t1), in order."""
        import pandas as pd  # only a recalculation reads history: the worker loads it then

        some = ""
        if cells is not None:
            some = "AND (" + " OR ".join(f'"cell" = {quoted(c)}' for c in cells) + ") "
        table = self.query.csv(
            'SELECT "voltage_v", "current_ka" FROM "cell" '
            f'WHERE "potline" = {quoted(potline)} {some}AND time >= {t0_ns} AND time < {t1_ns} '
            'GROUP BY "cell"'
        )
        if not table:
            return empty_batch()
        frame = pd.read_csv(io.BytesIO(table), usecols=list(COLUMNS), dtype=COLUMNS)
        vi = frame[["voltage_v", "current_ka"]].to_numpy()
        ok = ~np.isnan(vi).any(axis=1)  # a point without voltage or current is no sample
        tags = frame["tags"].cat
        code, ts, vi = tags.codes.to_numpy()[ok], frame["time"].to_numpy()[ok], vi[ok]
        if not len(code):
            return empty_batch()
        # the cells in the order the database sent them: ties in time keep that order
        used, first = np.unique(code, return_index=True)
        used = used[np.argsort(first)]
        ids = np.zeros(len(tags.categories), np.int64)
        ids[used] = np.arange(len(used))
        cell_id = ids[code]
        order = np.argsort(ts, kind="stable")
        return SampleBatch(
            cells=[(potline, _tag_value(tags.categories[k])) for k in used.tolist()],
            cell_id=cell_id[order],
            ts_ns=ts[order],
            voltage_v=vi[order, 0],
            current_ka=vi[order, 1],
            extra=[None] * len(order),
            by_cell=_by_cell(cell_id, ts, vi),
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


def _by_cell(
    cell_id: np.ndarray, ts: np.ndarray, vi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The answer's columns as they came, if sorted by cell and time, else None.

    InfluxDB answers ``GROUP BY "cell"`` a series at a time, each in time order.
    """
    same = cell_id[1:] == cell_id[:-1]
    if ((cell_id[1:] > cell_id[:-1]) | (same & (ts[1:] >= ts[:-1]))).all():
        return cell_id, ts, vi[:, 0].copy(), vi[:, 1].copy()
    return None


def _by_window(
    windows: list[tuple[tuple[str, str], int, int]], reads: Iterator[Windows]
) -> Iterator[SampleBatch]:
    """Each window's samples in the windows' order, the reads taken as they are needed.

    The reads come in the order of their windows' first appearance, so a window's read is
    either held already or the next ones hold it; a window asked twice is given twice.
    """
    uses = Counter(windows)
    held: Windows = {}
    for window in windows:
        while window not in held:
            held.update(next(reads))
        uses[window] -= 1
        yield held[window] if uses[window] else held.pop(window)


def _in_order(calls: list[Callable[[], T]]) -> Iterator[T]:
    """The calls' results in order, ``AHEAD`` of them running at any time, the first at once.

    Two hours' queries in flight read a day's raw points in two thirds of the time of one
    (InfluxDB answers one while it writes the other); never more, so that what is read
    ahead of a slower caller stays two answers.
    """
    reader = ThreadPoolExecutor(AHEAD, thread_name_prefix="history")
    ahead = [reader.submit(call) for call in calls[:AHEAD]]
    return _results(reader, ahead, iter(calls[AHEAD:]))


def _results(
    reader: ThreadPoolExecutor, ahead: list[Future[T]], rest: Iterator[Callable[[], T]]
) -> Iterator[T]:
    try:
        while ahead:
            out = ahead.pop(0).result()
            ahead += [reader.submit(call) for call in islice(rest, 1)]
            yield out
    finally:
        reader.shutdown(cancel_futures=True)


def _tag_value(key: str) -> str:
    r"""The value of a series key's one tag: ``cell=C\\,1`` is ``C,1``."""
    return ESCAPED.sub(r"\1", key.partition("=")[2])


def _event(potline: str, row: dict[str, Any]) -> Event:
    """An event as the journal held it: the raw point's fields are its data.

    The raw point stores numbers as floats; the anode position is an integer again.
    """
    data = {k: v for k, v in row.items() if v is not None and k not in ("time", *EVENT_TAGS)}
    data.pop("seen", None)  # the placeholder field of an event with no data
    if type(data.get("anode")) is float and data["anode"].is_integer():
        data["anode"] = int(data["anode"])
    return Event(potline, str(row["cell"]), int(row["time"]), str(row["type"]), data)
