"""The processor stage: inbox rows in, processors applied, output and state committed.

Runs in its own thread. Each step reads the rows after the checkpointed position, turns
them into a typed ``Batch``, applies every processor in order and commits the line
protocol, the processors' states and the new position in one transaction.

A point or sample that line protocol cannot carry (``collector.sinks.lineproto.Unencodable``) is
counted as ``unencodable`` and kept in the rejected file with the reason, like the lines the
database refuses: retrying cannot make it encodable, and it must not hold up the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import orjson

from collector.engine.batch import (
    derived_extra,
    deriver_of,
    empty_batch,
    in_order,
    sample_batch,
)
from collector.journal.store import EVENT, KPI, RAW, InboxRows, Store
from collector.runtime.metrics import Metrics
from collector.sinks.lineproto import (
    Rejected,
    Unencodable,
    encode_points,
    encode_samples,
    series_prefix,
)
from processors.base import Alerting, Flushing, Processor
from processors.model import Batch, Event, Point, SampleBatch

log = logging.getLogger(__name__)

ORDERING_STATE = "ordering"
PRUNE_EVERY_S = 60.0
CHECKPOINT_EVERY_S = 1.0
# Between polls the inbox fills up: a tenth of a second makes batches of thousands at full
# speed, where each processor's fixed cost per batch no longer shows.
POLL_S = 0.1
RETRY_MAX_S = 30.0
# (line count, body, what could not be encoded) of a chunk of output
Encoded = tuple[int, bytes, list[Rejected]]
# at shutdown the inbox is safe on disk: a journal that refuses commits must not hang the stop
GIVE_UP_AT_SHUTDOWN = 3


class Rework(Protocol):
    """Work on the processors' states between two batches: a recalculation of periods.

    The engine calls it before a batch with the committed states; it returns the states to
    replace and the points to write, committed together, or None when it cannot run yet
    (it is called again before the next batch). ``committed`` follows the commit.
    """

    def __call__(self, states: Mapping[str, Any]) -> tuple[dict[str, Any], list[Point]] | None:
        """New states (by processor name) and points, or None: not now."""
        ...

    def committed(self) -> None:
        """The states and points are in the journal."""
        ...


class Engine:
    """Applies the processors to the journal's inbox, one committed batch at a time."""

    def __init__(
        self,
        store: Store,
        processors: Sequence[Processor],
        *,
        instance: str,
        metrics_interval_s: float,
        dedup_window_s: float,
        batch_rows: int = 20_000,
        clock: Callable[[], int] = time.time_ns,
        alerts: Callable[[Point], tuple[str, bytes]] | None = None,
        rejected_path: Path | None = None,
    ) -> None:
        """``alerts`` makes the (topic, payload) of an ``alarm`` point; None: no alerts.

        ``rejected_path`` is the file that keeps what cannot be encoded; None: the log does.
        """
        self.store = store
        self.processors = list(processors)
        self.instance = instance
        self.batch_rows = batch_rows
        self._alert = alerts
        self._rejected_path = rejected_path
        self._clock = clock
        self._metrics_every_ns = int(metrics_interval_s * 1e9)
        self._next_metrics_ns = clock() + self._metrics_every_ns
        self._window_ns = int(dedup_window_s * 1e9)
        self._marks: list[tuple[int, int]] = []
        self._position = store.position()
        self._states: dict[str, Any] = {p.name: store.load_state(p.name) for p in self.processors}
        self._newest: dict[str, int] = store.load_state(ORDERING_STATE) or {}
        self._prefixes: dict[int, str] = {}
        self._bad_cells: dict[int, str] = {}  # cell id -> why its series cannot be encoded
        self._derive = deriver_of(self.processors)
        self._next_checkpoint_ns = 0
        self._replacements: list[Processor] = []
        self._rework: list[Rework] = []
        self._lock = threading.Lock()

    def replace(self, processors: Sequence[Processor]) -> None:
        """Put these processors in place of those of the same names, from the next batch on.

        For a rules reload, from any thread: each keeps the state its predecessor left, and
        the other processors (the KPIs) are untouched.
        """
        with self._lock:
            self._replacements = list(processors)

    def _swap(self) -> None:
        with self._lock:
            new, self._replacements = {p.name: p for p in self._replacements}, []
        if new:
            self.processors = [new.get(p.name, p) for p in self.processors]
            self._derive = deriver_of(self.processors)
            log.info("processors replaced: %s", ", ".join(new))

    def submit(self, job: Rework) -> None:
        """Run ``job`` before the next batch, from any thread."""
        with self._lock:
            self._rework.append(job)

    def _do_rework(self) -> None:
        with self._lock:
            jobs = list(self._rework)
        for job in jobs:
            result = job(self._states)
            if result is None:
                continue
            states, points = result
            n, body, rejected = encode_points(points)
            counts = {"unencodable": self._keep(rejected)}
            self.store.commit(self._position, states, [(KPI, n, body)], self._clock(), counts)
            self._states.update(states)
            with self._lock:
                self._rework.remove(job)
            job.committed()

    def step(self) -> int:
        """Process one batch; returns the number of inbox rows consumed (0: nothing new)."""
        self._swap()
        if self._rework:
            self._do_rework()
        now = self._clock()
        rows = self.store.read(self._position, self.batch_rows)
        extra_points: list[Point] = []
        if now >= self._next_metrics_ns:
            self._next_metrics_ns = now + self._metrics_every_ns
            extra_points.append(self.metrics(now).point(self.instance, now))
        if not rows.seq and not extra_points:
            return 0
        position = rows.seq[-1] if rows.seq else self._position
        raw, n_late, kpi_points, states, failed, paging = self._apply(rows)
        n_kpi, kpi, kpi_rejected = encode_points([*kpi_points, *extra_points])
        unencodable = self._keep([*raw[2], *kpi_rejected])
        chunks = [(RAW, raw[0], raw[1]), (KPI, n_kpi, kpi)]
        counts = {"late": n_late, "processor_errors": failed, "unencodable": unencodable}
        alerts = [self._alert(p) for p in paging] if self._alert is not None else []
        self.store.commit(position, states, chunks, now, counts, alerts)
        self._position = position
        self._states.update(states)
        self._newest = states[ORDERING_STATE]
        self._maybe_prune(now)
        return len(rows.seq)

    def _keep(self, rejected: list[Rejected]) -> int:
        """Keep what could not be encoded, before the commit: at least once, never lost."""
        if not rejected:
            return 0
        if self._rejected_path is None:
            for r in rejected:
                log.error("cannot encode: %s: %s", r.reason, r.what)
            return len(rejected)
        log.error(
            "%d cannot be encoded, kept in %s; the first: %s",
            len(rejected),
            self._rejected_path,
            rejected[0].reason,
        )
        with open(self._rejected_path, "a", encoding="utf-8") as f:
            f.writelines(f"# unencodable: {r.reason}\n# {r.what}\n" for r in rejected)
        return len(rejected)

    def metrics(self, now_ns: int) -> Metrics:
        """A snapshot of the counters of every stage and of the outbox gauges."""
        lines, oldest = self.store.backlog()
        lag_s = (now_ns - oldest) / 1e9 if oldest else 0.0
        return Metrics.from_counters(self.store.counters(), lines, lag_s)

    def finish(self) -> None:
        """Commit every processor's held-back values and a last self-metrics point."""
        now = self._clock()
        states = dict(self._states)
        points: list[Point] = []
        for proc in self.processors:
            if isinstance(proc, Flushing):
                states[proc.name], produced = proc.flush(states.get(proc.name))
                points.extend(produced)
        points.append(self.metrics(now).point(self.instance, now))
        n, body, rejected = encode_points(points)
        states[ORDERING_STATE] = self._newest
        counts = {"unencodable": self._keep(rejected)}
        self.store.commit(self._position, states, [(KPI, n, body)], now, counts)
        self._states = states

    def _apply(
        self, rows: InboxRows
    ) -> tuple[Encoded, int, list[Point], dict[str, Any], int, list[Point]]:
        """(raw lines, late count, points, states, failures, alerts) of a batch, uncommitted.

        A processor that raises keeps its previous state and loses this batch, counted in
        ``processor_errors``: one faulty processor must not stop the raw data or the others.
        """
        if EVENT in rows.kind:
            at = [k for k, kind in enumerate(rows.kind) if kind == EVENT]
            events = [self._event(rows, k) for k in at]
            rows = rows.take(k for k, kind in enumerate(rows.kind) if kind != EVENT)
        else:
            events = []
        samples, raw, newest, n_late = self._samples(rows)
        batch = Batch(samples, events)
        points: list[Point] = []
        states: dict[str, Any] = {ORDERING_STATE: newest}
        failed = 0
        paging: list[Point] = []
        for proc in self.processors:
            previous = self._states.get(proc.name)
            try:
                states[proc.name], produced = proc.apply(batch, previous)
            except Exception:
                log.exception("processor %s failed on a batch; it keeps its state", proc.name)
                states[proc.name], produced = previous, []
                failed += 1
            points.extend(produced)
            if isinstance(proc, Alerting):
                paging.extend(proc.alerts(produced))
        return raw, n_late, points, states, failed, paging

    def _samples(self, rows: InboxRows) -> tuple[SampleBatch, Encoded, dict[str, int], int]:
        """Raw lines for every sample, and the in-order ones as a batch for integration."""
        if not rows.seq:
            return empty_batch(), (0, b"", []), self._newest, 0
        cid, ts, body = rows.cell_id, rows.ts, rows.body
        v = cast("tuple[float, ...]", rows.v)  # a sample row always has both (SAMPLE)
        i = cast("tuple[float, ...]", rows.i)
        extra = [orjson.loads(b) if b else None for b in body]
        everything = sample_batch(self.store.cells.name, cid, ts, v, i, extra)
        everything.extra = derived_extra(self._derive, everything)
        raw = self._raw(cid, ts, v, i, everything.extra)
        batch, late, newest = in_order(everything, self._newest)
        return batch, raw, newest, int(late.sum())

    def _raw(
        self,
        cid: Sequence[int],
        ts: Sequence[int],
        v: Sequence[float],
        i: Sequence[float],
        extra: Sequence[Any],
    ) -> Encoded:
        """The raw ``cell`` lines.

        The samples of a cell whose series cannot be encoded are rejected, with the reason.
        """
        bad = {c for c in set(cid) if not self._known_prefix(c)}
        if not bad:
            return encode_samples(self._prefixes, cid, ts, v, i, extra)
        samples = list(zip(cid, ts, v, i, extra, strict=True))
        rejected = [self._bad_sample(*s) for s in samples if s[0] in bad]
        good = [s for s in samples if s[0] not in bad]
        if not good:
            return 0, b"", rejected
        n, body, more = encode_samples(self._prefixes, *zip(*good, strict=True))
        return n, body, [*rejected, *more]

    def _known_prefix(self, cid: int) -> bool:
        """Whether the series prefix of a cell can be encoded, formatted and cached once."""
        if cid in self._prefixes:
            return True
        if cid in self._bad_cells:
            return False
        potline, cell = self.store.cells.name(cid)
        try:
            self._prefixes[cid] = series_prefix("cell", (("potline", potline), ("cell", cell)))
        except Unencodable as err:
            self._bad_cells[cid] = str(err)
            return False
        return True

    def _bad_sample(self, cid: int, ts: int, v: float, i: float, extra: Any) -> Rejected:
        potline, cell = self.store.cells.name(cid)
        return Rejected(self._bad_cells[cid], repr(("cell", potline, cell, ts, v, i, extra)))

    def _event(self, rows: InboxRows, k: int) -> Event:
        potline, cell = self.store.cells.name(rows.cell_id[k])
        data = orjson.loads(rows.body[k] or b"{}")
        kind = data.pop("type")
        return Event(potline, cell, rows.ts[k], kind, data)

    def _maybe_prune(self, now: int) -> None:
        """Forget inbox rows older than the de-duplication window (by arrival)."""
        if now >= self._next_checkpoint_ns:
            self._next_checkpoint_ns = now + int(CHECKPOINT_EVERY_S * 1e9)
            self.store.checkpoint()
        if not self._marks or now - self._marks[-1][0] >= PRUNE_EVERY_S * 1e9:
            self._marks.append((now, self._position))
        cutoff = now - self._window_ns
        expired = [seq for t, seq in self._marks if t <= cutoff]
        if expired:
            self._marks = [(t, s) for t, s in self._marks if t > cutoff]
            pruned = self.store.prune(expired[-1])
            log.debug("pruned %d inbox rows", pruned)

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set and the inbox is drained.

        The inbox is written by another process, so new rows are found by polling.
        """
        failures = 0
        while True:
            try:
                busy = self.step()
                failures = 0
            except Exception:
                failures += 1
                if stop.is_set() and failures >= GIVE_UP_AT_SHUTDOWN:
                    log.exception("cannot commit; stopping, the inbox keeps the rest")
                    return
                delay = min(RETRY_MAX_S, 2.0 ** (failures - 1))
                log.exception("processor step failed; retry %d in %.0f s", failures, delay)
                stop.wait(delay)
                continue
            if busy:
                continue
            if stop.is_set():
                return
            stop.wait(POLL_S)
