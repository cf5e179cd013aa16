"""The processor stage: inbox rows in, processors applied, output and state committed.

Runs in its own thread. Each step reads the rows after the last it processed, turns them
into a typed ``Batch``, applies every processor in order and commits the line protocol.
The processors' states stay in memory; every ``STATE_EVERY_S`` (or ``STATE_EVERY_ROWS``) a
checkpoint commits them, as JSON, with the position they stand at, the counters of the
rows since the last one and the alerts they raised, in one transaction, as a stream
processor checkpoints over a replayable log. A crash goes back to the last checkpoint and
processes the inbox since then again: its points are overwrites of the same measurement,
tags and time, while counters and alerts, committed only with a checkpoint, count and page
once. So a batch costs what its rows cost, not a copy of every cell's state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
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
    timed,
)
from collector.engine.pacing import (
    POLL_S,
    PRUNE_EVERY_S,
    QUIET_STATE_S,
    STATE_EVERY_ROWS,
    STATE_EVERY_ROWS_LIVE,
    STATE_EVERY_S,
    WAL_EVERY_S,
)
from collector.engine.rawlines import Encoded, RawLines
from collector.journal.store import EVENT, KPI, RAW, InboxRows, Store
from collector.runtime.metrics import Metrics
from collector.sinks.lineproto import encode_points
from processors.base import Alerting, Chunked, Flushing, Processor, checkpoint
from processors.model import Batch, Event, Point, SampleBatch

log = logging.getLogger(__name__)

ORDERING_STATE = "ordering"
RETRY_MAX_S = 30.0
# at shutdown the inbox is safe on disk: a journal that refuses commits must not hang the stop
GIVE_UP_AT_SHUTDOWN = 3
_IN_JOURNAL = object()
"""A saved state that is read back from the journal when needed (a ``Chunked`` one)."""


class Rework(Protocol):
    """Work on the processors' states between two batches: a recalculation of periods.

    The engine calls it before a batch with the states as they stand (as JSON data, a copy
    the job may change); it returns the states to replace and the points to write,
    committed together with a checkpoint, or None when it cannot run yet (it is called
    again before the next batch). ``committed`` follows the commit.
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
        batch_rows: int = 5_000,  # the inbox rows of a batch, at most
        state_every_s: float = STATE_EVERY_S,
        clock: Callable[[], int] = time.time_ns,
        alerts: Callable[[Point], tuple[str, bytes]] | None = None,
        rejected_path: Path | None = None,
    ) -> None:
        """``alerts`` makes the (topic, payload) of an ``alarm`` point; None: no alerts.

        ``state_every_s``: how often the states are checkpointed (0: with every batch).

        ``rejected_path`` is the file that keeps what cannot be encoded; None: the log does.
        """
        self.store = store
        self.processors = list(processors)
        self.instance = instance
        self.batch_rows = batch_rows
        self._alert = alerts
        self._clock = clock
        self._metrics_every_ns = int(metrics_interval_s * 1e9)
        self._next_metrics_ns = clock() + self._metrics_every_ns
        self._window_ns = int(dedup_window_s * 1e9)
        self._marks: list[tuple[int, int]] = []
        self._position = self._saved = store.position()
        self._states: dict[str, Any] = {p.name: store.load_state(p.name) for p in self.processors}
        self._saved_states = dict(self._states)
        self._newest: dict[str, int] = store.load_state(ORDERING_STATE) or {}
        self._saved_newest = self._newest
        self._counts: Counter[str] = Counter()  # of the rows since the last checkpoint
        self._alerts: list[tuple[str, bytes]] = []  # raised since the last checkpoint
        self._since: list[Batch] = []  # the batches since the last checkpoint
        self.on_output: Callable[[], None] = lambda: None  # output committed: the drain's nudge
        self._rows_since = 0
        self._state_every_ns = int(state_every_s * 1e9)
        self._quiet_every_ns = min(self._state_every_ns, int(QUIET_STATE_S * 1e9))
        self._state_ns = clock()  # when the last checkpoint was taken (or the engine began)
        self._raw = RawLines(store.cells.name, rejected_path)
        self._derive = deriver_of(self.processors)
        self._paging = _alerting(self.processors)
        self._next_wal_ns = 0
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
            self._paging = _alerting(self.processors)
            log.info("processors replaced: %s", ", ".join(new))

    def submit(self, job: Rework) -> None:
        """Run ``job`` before the next batch, from any thread."""
        with self._lock:
            self._rework.append(job)

    def _do_rework(self) -> None:
        with self._lock:
            jobs = list(self._rework)
        for job in jobs:
            result = job({p.name: checkpoint(p, self._states.get(p.name)) for p in self.processors})
            if result is None:
                continue
            states, points = result
            self._states.update(states)
            n, body, rejected = encode_points(points)
            self._counts["unencodable"] += self._raw.keep(rejected)
            self._checkpoint(self._clock(), [(KPI, n, body)])
            with self._lock:
                self._rework.remove(job)
            job.committed()

    def step(self) -> int:
        """Process one batch; returns the number of inbox rows consumed (0: nothing new).

        When anything fails (a full disk refusing the commit), the engine goes back to its
        last checkpoint, as a restart would, and the error is raised for the caller to retry.
        """
        self._swap()
        try:
            return self._step()
        except Exception:
            self._rewind()
            raise

    def _saved_state(self, name: str) -> Any:
        """A processor's state at the last checkpoint."""
        state = self._saved_states.get(name)
        return self.store.load_state(name) if state is _IN_JOURNAL else state

    def _rewind(self) -> None:
        self._states = {k: self._saved_state(k) for k in self._saved_states if k != ORDERING_STATE}
        self._newest = self._saved_states.get(ORDERING_STATE, self._saved_newest)
        self._position = self._saved
        self._counts, self._alerts, self._since = Counter(), [], []
        self._rows_since = 0

    def _step(self) -> int:
        if self._rework:
            self._do_rework()
        now = self._clock()
        rows = self.store.read(self._position, self.batch_rows)
        extra_points: list[Point] = []
        if now >= self._next_metrics_ns:
            self._next_metrics_ns = now + self._metrics_every_ns
            extra_points.append(self.metrics(now).point(self.instance, now))
        if not rows.seq and not extra_points:
            if self._position != self._saved and now >= self._state_ns + self._quiet_every_ns:
                self._checkpoint(now, [])  # gone quiet: what is pending is committed
            return 0
        raw, kpi_points, paging = self._apply(rows)
        n_kpi, kpi, kpi_rejected = encode_points([*kpi_points, *extra_points])
        self._counts["unencodable"] += self._raw.keep([*raw[2], *kpi_rejected])
        chunks = [(RAW, raw[0], raw[1]), (KPI, n_kpi, kpi)]
        if self._alert is not None:
            self._alerts += [self._alert(p) for p in paging]
        self._position = rows.seq[-1] if rows.seq else self._position
        self._rows_since += len(rows.seq)
        cap = STATE_EVERY_ROWS if len(rows.seq) >= self.batch_rows else STATE_EVERY_ROWS_LIVE
        due = now >= self._state_ns + self._state_every_ns or self._rows_since >= cap
        if paging or due:
            self._checkpoint(now, chunks)  # an alarm pages at once
        else:
            self.store.commit(self._saved, {}, chunks, now, {})  # output only
        if raw[0] or n_kpi:
            self.on_output()
        self._maybe_prune(now)
        return len(rows.seq)

    def _checkpoint(self, now: int, chunks: list[tuple[int, int, bytes]]) -> None:
        """Commit the states, position, counters and alerts, with this output.

        A ``Chunked`` processor's state is committed as its changed parts; the saved state
        kept to go back to is then the journal's (``_saved_state``), not a whole copy.
        """
        states: dict[str, Any] = {}
        parts: dict[str, tuple[dict[str, Any], bool]] = {}
        for p in self.processors:
            if isinstance(p, Chunked):
                states[p.name], changed, whole = p.changes(self._states.get(p.name))
                parts[p.name] = (changed, whole)
            else:
                states[p.name] = checkpoint(p, self._states.get(p.name))
        states[ORDERING_STATE] = self._newest
        try:
            self.store.commit(
                self._position, states, chunks, now, self._counts, self._alerts, parts
            )
        except Exception:
            for p in self.processors:  # their marks of what changed went with the commit
                if p.name in parts:
                    self._states[p.name] = checkpoint(p, self._states.get(p.name))
            raise
        saved = {name: _IN_JOURNAL if name in parts else s for name, s in states.items()}
        self._saved, self._saved_states = self._position, saved
        self._counts, self._alerts, self._since = Counter(), [], []
        self._rows_since = 0
        self._state_ns = now

    def metrics(self, now_ns: int) -> Metrics:
        """A snapshot of the counters of every stage and of the outbox gauges."""
        lines, oldest = self.store.backlog()
        lag_s = (now_ns - oldest) / 1e9 if oldest else 0.0
        counters = Counter(self.store.counters()) + self._counts  # with the uncheckpointed
        return Metrics.from_counters(dict(counters), lines, lag_s)

    def finish(self) -> None:
        """Commit every processor's held-back values and a last self-metrics point."""
        now = self._clock()
        points: list[Point] = []
        for proc in self.processors:
            if isinstance(proc, Flushing):
                self._states[proc.name], produced = proc.flush(self._states.get(proc.name))
                points.extend(produced)
        points.append(self.metrics(now).point(self.instance, now))
        n, body, rejected = encode_points(points)
        self._counts["unencodable"] += self._raw.keep(rejected)
        self._checkpoint(now, [(KPI, n, body)])

    def _apply(self, rows: InboxRows) -> tuple[Encoded, list[Point], list[Point]]:
        """(raw lines, points, alerts) of a batch, uncommitted; the states move on.

        A processor that raises loses this batch, counted in ``processor_errors``: one
        faulty processor must not stop the raw data or the others. It goes on from the
        state it had before the batch: its last checkpoint, with the batches since then
        applied again (their points were written already).
        """
        if EVENT in rows.kind:
            at = [k for k, kind in enumerate(rows.kind) if kind == EVENT]
            events = [self._event(rows, k) for k in at]
            rows = rows.take(k for k, kind in enumerate(rows.kind) if kind != EVENT)
        else:
            events = []
        samples, raw, self._newest, late, live = self._samples(rows)
        self._counts["late"] += late
        batch = Batch(samples, events, live)
        points: list[Point] = []
        paging: list[Point] = []
        for proc in self.processors:
            try:
                self._states[proc.name], produced = proc.apply(batch, self._states.get(proc.name))
            except Exception:
                log.exception("processor %s failed on a batch; it loses the batch", proc.name)
                self._states[proc.name], produced = self._recovered(proc), []
                self._counts["processor_errors"] += 1
            points.extend(produced)
            if proc.name in self._paging:
                paging.extend(self._paging[proc.name].alerts(produced))
        self._since.append(batch)
        return raw, points, paging

    def _recovered(self, proc: Processor) -> Any:
        """The processor's state before the batch that failed: from its last checkpoint."""
        state = self._saved_state(proc.name)
        try:
            for batch in self._since:
                state, _ = proc.apply(batch, state)
        except Exception:  # a batch it took once: it is not deterministic; the checkpoint
            log.exception("processor %s cannot redo its batches since the checkpoint", proc.name)
            return self._saved_state(proc.name)
        return state

    def _samples(
        self, rows: InboxRows
    ) -> tuple[SampleBatch, Encoded, dict[str, int], int, SampleBatch | None]:
        """Raw lines of every sample; in-order ones to integrate; ``Batch.timed`` if late."""
        if not rows.seq:
            return empty_batch(), (0, b"", []), self._newest, 0, None
        cid, ts, body = rows.cell_id, rows.ts, rows.body
        v = cast("tuple[float, ...]", rows.v)  # a sample row always has both (SAMPLE)
        i = cast("tuple[float, ...]", rows.i)
        extra = _extras(body)
        everything = sample_batch(self.store.cells.name, cid, ts, v, i, extra, rows.lag)
        everything.extra = derived_extra(self._derive, everything)
        raw = self._raw.encode(cid, ts, v, i, everything.extra)
        batch, late, newest = in_order(everything, self._newest)
        return batch, raw, newest, int(late.sum()), timed(everything, late)

    def _event(self, rows: InboxRows, k: int) -> Event:
        potline, cell = self.store.cells.name(rows.cell_id[k])
        data = orjson.loads(rows.body[k] or b"{}")
        kind = data.pop("type")
        return Event(potline, cell, rows.ts[k], kind, data)

    def _maybe_prune(self, now: int) -> None:
        """Forget inbox rows older than the de-duplication window (by arrival)."""
        if now >= self._next_wal_ns:
            self._next_wal_ns = now + int(WAL_EVERY_S * 1e9)
            self.store.checkpoint()
        if not self._marks or now - self._marks[-1][0] >= PRUNE_EVERY_S * 1e9:
            self._marks.append((now, self._saved))  # a crash reads from the checkpoint
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
            if busy >= self.batch_rows:
                continue  # a backlog: the next batch is there already
            if not busy and stop.is_set():
                return
            stop.wait(POLL_S)


def _alerting(processors: Sequence[Processor]) -> dict[str, Alerting]:
    """The processors that page, found once: ``isinstance`` on a protocol is slow per batch."""
    return {p.name: p for p in processors if isinstance(p, Alerting)}


def _extras(body: Sequence[bytes | None]) -> list[Any]:
    """Each row's extra fields: one orjson call when every row has some (half the time).

    Each body is one JSON value written by ``orjson.dumps`` (journal/store.py), so the
    bodies joined with commas make one array.
    """
    if all(body):
        parsed: list[Any] = orjson.loads(b"[" + b",".join(cast("Sequence[bytes]", body)) + b"]")
        return parsed
    return [orjson.loads(b) if b else None for b in body]
