"""Recalculation requests carried out by the worker that owns a state directory.

A request is run by the engine between two batches (``Engine.submit``), once everything
the engine committed is in the database: then history read back from the database and the
processors' live state describe the same data, and the periods the live state still has
open continue from the recalculated totals. While the database does not take the
buffered points, the request waits and the engine goes on with live data.

With no instance running, ``carry_out`` does the same in the command's own process, on the
state directory's journal, after catching up with whatever the inbox still holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from collector import build
from collector.config.models import Config
from collector.engine.engine import Engine
from collector.engine.history import History
from collector.engine.recalc import Recalculation
from collector.engine.targets import Target
from collector.journal import store as journal
from collector.journal.outbox import Outbox
from collector.journal.requests import Requests
from collector.sinks.erase import Eraser
from collector.sinks.influxql import InfluxQL, QueryError
from processors.model import Point

log = logging.getLogger(__name__)

DRAIN_WAIT_S = 30.0
"""How long a request waits, with the engine paused, for the database to take the buffer."""
RETRY_S = 30.0
"""How long the engine goes on with live data before the request tries again."""
POLL_S = 0.05
HISTORY_TIMEOUT_S = 300.0
"""An hour of a 400-cell potline at 1 Hz is 1.4 million rows for the database to send."""


class RecalcJob:
    """One filed request, as the engine's ``Rework``."""

    def __init__(self, cfg: Config, request_id: int, request: Mapping[str, Any]) -> None:
        self.cfg = cfg
        self.id = request_id
        self.targets = [Target.of(t) for t in request["targets"]]
        conn = journal.connect_journal(cfg.state_path)
        self.requests = Requests(conn)
        self.outbox = Outbox(conn)
        self.waiting: str | None = None  # why it could not run, the last time it was asked
        self._not_before = 0.0
        self._outcome: dict[str, Any] = {}

    def __call__(self, states: Mapping[str, Any]) -> tuple[dict[str, Any], list[Point]] | None:
        """Recalculate once the buffer is written; None (not now) while it is not.

        A failure is the request's outcome: it must not stop the live engine behind it.
        """
        if time.monotonic() < self._not_before:
            return None
        try:
            return self._attempt(states)
        except QueryError as err:  # a wrong password, no database: the server's words
            log.error("recalculation %d failed: %s", self.id, err)
            self._outcome = {"error": str(err)}
        except Exception as err:
            log.exception("recalculation %d failed", self.id)
            self._outcome = {"error": f"{type(err).__name__}: {err} (see the instance's log)"}
        return {}, []

    def _attempt(self, states: Mapping[str, Any]) -> tuple[dict[str, Any], list[Point]] | None:
        query = self._query()  # first: a refusal is said at once, not after the wait
        if not _drained(self.outbox, DRAIN_WAIT_S):
            self.waiting = "the database has not taken the buffered points yet"
            log.warning("recalculation %d waits: %s", self.id, self.waiting)
            self._not_before = time.monotonic() + RETRY_S
            return None
        self.waiting = None
        new, points, self._outcome = self._run(states, query)
        return new, points

    def committed(self) -> None:
        """Record the outcome for the command that filed the request."""
        self.requests.finish(self.id, self._outcome, time.time_ns())
        log.info("recalculation %d done: %s", self.id, self._outcome)

    def _query(self) -> InfluxQL:
        """The database's query endpoint, once it answered a query."""
        if self.cfg.sink.type != "influx":
            msg = f"recalculation reads the database back; the {self.cfg.sink.type} sink cannot"
            raise QueryError(msg)
        query = InfluxQL(self.cfg, timeout_s=HISTORY_TIMEOUT_S)
        query.series("SHOW MEASUREMENTS LIMIT 1")
        return query

    def _run(
        self, states: Mapping[str, Any], query: InfluxQL
    ) -> tuple[dict[str, Any], list[Point], dict[str, Any]]:
        recalc = Recalculation(
            lambda: build.recomputable_processors(self.cfg),
            History(query),
            build.reach(self.cfg),
            now_ns=time.time_ns(),
        )
        total = sum(recalc.windows(t)[2] for t in self.targets)
        done = 0

        def progress() -> None:
            nonlocal done
            done += 1
            self.requests.progress(self.id, done, total)

        live = dict(states)
        new: dict[str, Any] = {}
        points: list[Point] = []
        eraser, removed = Eraser(self.cfg, query), 0
        for target in self.targets:
            outcome = recalc.run(target, {**live, **new}, progress)
            new.update(outcome.states)
            points += outcome.points
            for stale in outcome.stale:  # before the new points are committed: never both
                eraser.erase(stale.measurement, stale.tags, stale.time_ns)
            removed += len(outcome.stale)
        return new, points, _summary(self.targets, points, removed)


def _summary(targets: list[Target], points: list[Point], removed: int) -> dict[str, Any]:
    """Periods rewritten per potline and kind, the points written and the stale removed."""
    periods = {t.potline: dict(sorted(Counter(s.kind for s in t.spans).items())) for t in targets}
    return {"periods": periods, "points": len(points), "removed": removed}


def _drained(outbox: Outbox, wait_s: float) -> bool:
    """Whether the outbox empties within ``wait_s`` (the drain writes meanwhile)."""
    deadline = time.monotonic() + wait_s
    while outbox.size()[1]:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


class Poller:
    """Hands the state directory's new requests to the engine; the worker calls ``poll``."""

    def __init__(self, cfg: Config, engine: Engine) -> None:
        self.cfg = cfg
        self.engine = engine
        self.requests = Requests(journal.connect_journal(cfg.state_path))
        self._submitted: dict[int, RecalcJob] = {}

    def poll(self) -> list[RecalcJob]:
        """Submit the requests filed since the last poll; the new jobs."""
        new = []
        for request_id, request in self.requests.pending():
            if request_id not in self._submitted:
                job = self._submitted[request_id] = RecalcJob(self.cfg, request_id, request)
                self.engine.submit(job)
                new.append(job)
        return new


def carry_out(cfg: Config, request_id: int) -> bool:
    """Run a filed request here, no instance running; False if the database took no writes.

    The inbox is processed first, as the next ``run`` would, so that the live state and the
    database agree before history is read.
    """
    engine, drain = build.engine(cfg), build.drain(cfg)
    finishing = threading.Event()
    writer = threading.Thread(target=drain.run, args=(finishing,), name="drain")
    writer.start()
    try:
        while engine.step():
            pass
        jobs = Poller(cfg, engine).poll()
        job = next(j for j in jobs if j.id == request_id)
        engine.step()
        return job.waiting is None
    finally:
        finishing.set()
        writer.join()
        engine.finish()
        drain.run(finishing)
        drain.sink.close()
