"""The sink stage: outbox rows to the database, deleted only once accepted.

While the database is down the rows wait in the journal; past ``max_buffer_bytes`` the
oldest raw-sample rows are dropped (and counted) so that KPI points, which cannot be
recomputed from anything else, are never lost. Lines the database refuses as invalid are
isolated by bisection and kept in ``rejected.lp`` with the reason, so one bad line does
not block or lose the good ones.

At shutdown the database gets ``shutdown_s`` in all to take what is left, however many
passes the caller makes (the worker makes two: before and after the open KPIs are
committed), so a stop while the database refuses writes takes a bounded, known time; what
it did not take stays in the journal and goes out at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from collector.journal.outbox import Outbox
from collector.journal.store import JOURNAL_ERRORS
from collector.sinks.base import Sink, SinkError
from collector.sinks.options import SinkOptions

log = logging.getLogger(__name__)

JOURNAL_RETRY_S = 1.0


class Drain:
    """Moves the journal's outbox into a sink, oldest first, with capped backoff."""

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        *,
        rejected_path: Path,
        options: SinkOptions,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.outbox = outbox
        self.sink = sink
        self.rejected_path = rejected_path
        self.batch_lines = options.batch_lines
        self.flush_interval_ns = int(options.flush_interval_s * 1e9)
        self.max_buffer_bytes = int(options.max_buffer_mib * 2**20)
        self.retry_max_s = options.retry_max_s
        self.shutdown_s = options.shutdown_s
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._failures = 0
        self._deadline: float | None = None
        self._due_ns = 0  # rows created up to then are due: the engine said it committed them
        self._woken = threading.Event()

    def nudge(self) -> None:
        """Make what the outbox holds now due, and wake the drain (``Engine.on_output``).

        The engine commits a batch's output at once, so waiting ``flush_interval_s`` more
        only delays it: with the nudge a point reaches the database about when its batch is
        done, and the engine can wait longer between batches at the same delay.
        """
        self._due_ns = self._clock()
        self._woken.set()

    def step(self, *, force: bool = False) -> bool:
        """Write one chunk if it is due; True when something was written.

        A chunk is due when it holds ``batch_lines`` lines, when its oldest row waited
        ``flush_interval_s`` or was there at the last ``nudge``, or when ``force``
        (shutdown) is set. Raises ``SinkError`` when a retryable write failed.
        """
        chunk = self.outbox.peek(self.batch_lines)
        if chunk is None:
            return False
        young = chunk.oldest_ns > self._due_ns
        young = young and self._clock() - chunk.oldest_ns < self.flush_interval_ns
        if chunk.lines < self.batch_lines and young and not force:
            return False
        chunk = self.outbox.with_body(chunk)
        self._write(chunk.body)
        self.outbox.delete_upto(chunk.last_id, chunk.lines)
        self._failures = 0
        return True

    def _write(self, body: bytes) -> None:
        """Write lines; bisect a refused batch down to the lines that are really invalid.

        Split into lines only when refused: a list of 5,000 lines and their join beside
        every chunk written made the worker's peak RSS, draining 200,000 messages of 400
        cells, 96 MiB instead of 92-94.
        """
        try:
            self.sink.write(body)
        except SinkError as err:
            if err.retryable:
                raise
            lines = body.splitlines(keepends=True)
            if len(lines) == 1:
                self._reject(lines[0], str(err))
                return
            half = len(lines) // 2
            self._write(b"".join(lines[:half]))
            self._write(b"".join(lines[half:]))

    def _reject(self, line: bytes, reason: str) -> None:
        self.outbox.count(write_errors=1)
        log.error("database refused a line, kept in %s: %s", self.rejected_path, reason)
        with open(self.rejected_path, "ab") as f:
            f.write(b"# " + reason.replace("\n", " ").encode() + b"\n" + line)

    def _on_failure(self, err: SinkError) -> float:
        """Count the failure, enforce the buffer bound, return the backoff delay."""
        self.outbox.write_failed(str(err))
        self._failures += 1
        nbytes, lines = self.outbox.size()
        if nbytes > self.max_buffer_bytes:
            dropped = self.outbox.drop_oldest_raw(self.max_buffer_bytes)
            log.warning(
                "buffer over %d bytes: dropped %d raw lines", self.max_buffer_bytes, dropped
            )
        delay: float = min(self.retry_max_s, 0.5 * 2 ** min(self._failures - 1, 16))
        log.warning("write failed (%s); %d lines buffered; retry in %.1f s", err, lines, delay)
        return delay

    def run(self, finishing: threading.Event) -> None:
        """Drain until ``finishing`` is set and the outbox is empty, or the deadline passed.

        ``finishing`` says no more output will come. The first time a run sees it, the
        database has ``shutdown_s`` from then on, shared with any later run; each run still
        tries at least once, so a database that is back takes the last points.
        """
        while True:
            if finishing.is_set() and self._deadline is None:
                self._deadline = self._monotonic() + self.shutdown_s
            self._woken.clear()
            try:
                wrote = self.step(force=finishing.is_set())
            except SinkError as err:
                if self._back_off(err, finishing):
                    continue
                log.error("database unavailable at shutdown; output stays buffered on disk")
                return
            except JOURNAL_ERRORS as err:
                if self._wait_for_journal(err, finishing):
                    continue
                log.error("journal unavailable at shutdown; output stays buffered on disk")
                return
            if wrote:
                continue
            if finishing.is_set():
                return
            self._woken.wait(min(0.2, self.flush_interval_ns / 1e9))

    def _back_off(self, err: SinkError, finishing: threading.Event) -> bool:
        """Wait before the next try; False once the shutdown deadline has passed."""
        delay = self._on_failure(err)
        if self._deadline is None:
            finishing.wait(delay)  # a stop cuts the wait short, and starts the deadline
            return True
        remaining = self._deadline - self._monotonic()
        if remaining <= 0:
            return False
        self._sleep(min(delay, remaining))
        return True

    def _wait_for_journal(self, err: Exception, finishing: threading.Event) -> bool:
        """Wait after the journal failed (a full disk, an I/O error); False past the deadline.

        The database may have taken the chunk whose deletion failed: it is written again
        once the journal works, and InfluxDB overwrites the identical points.
        """
        log.error("journal unavailable to the sink (%s); retrying in %.0f s", err, JOURNAL_RETRY_S)
        if self._deadline is None:
            finishing.wait(JOURNAL_RETRY_S)
            return True
        remaining = self._deadline - self._monotonic()
        if remaining <= 0:
            return False
        self._sleep(min(JOURNAL_RETRY_S, remaining))
        return True
