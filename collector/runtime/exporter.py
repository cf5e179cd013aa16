"""``metrics.listen``: ``GET /metrics`` for Prometheus and ``GET /health`` (contract 6.6).

Served from the MQTT process, because the broker session is known only there and that is
the process a supervisor watches; the database's state comes from the journal, where the
worker's drain records its last write (``collector.journal.outbox.write_state``). Both
endpoints read the journal files at request time through connections of their own
(``collector.runtime.metrics.read_metrics``), in the HTTP server's threads: no lock of the
ingest path is taken, and the MQTT thread never waits for a scrape. The numbers are the
ones the ``cellmon`` measurement carries, read from the same counters, so they agree.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from collector.config.models import Config
from collector.journal import store as journal
from collector.runtime.metrics import Reading, read_metrics

log = logging.getLogger(__name__)

# Each counter of the ``cellmon`` measurement: its Prometheus name (``_total`` is added by
# the exposition) and help. ``rejected`` is the sum of ``rejected_total`` by ``reason``.
COUNTERS: dict[str, tuple[str, str]] = {
    "messages": ("cellmon_mqtt_messages", "MQTT messages received"),
    "received": ("cellmon_received_objects", "objects received (an array's elements one each)"),
    "accepted": ("cellmon_accepted_objects", "objects stored"),
    "duplicates": ("cellmon_duplicate_objects", "objects already stored (redeliveries)"),
    "foreign": ("cellmon_foreign_objects", "objects of a potline this instance does not own"),
    "late": ("cellmon_late_samples", "samples at or before their cell's newest"),
    "processor_errors": ("cellmon_processor_errors", "batches a processor failed on"),
    "unencodable": ("cellmon_unencodable_points", "points line protocol cannot carry"),
    "written": ("cellmon_written_lines", "lines the database accepted"),
    "write_errors": ("cellmon_write_errors", "failed write requests"),
    "dropped": ("cellmon_dropped_lines", "raw lines dropped from a full buffer"),
    "alerts_published": ("cellmon_alerts_published", "alarm alerts the broker acknowledged"),
    "rules_reloads": ("cellmon_rules_reloads", "rules or config reloads that took effect"),
    "rules_rejected": ("cellmon_rules_rejected", "rules or config edits refused"),
    "sparkplug_births": ("cellmon_sparkplug_births", "Sparkplug births read"),
    "sparkplug_deaths": ("cellmon_sparkplug_deaths", "Sparkplug deaths read"),
    "sparkplug_seq_gaps": ("cellmon_sparkplug_sequence_gaps", "gaps in sequence numbers"),
    "sparkplug_lost": ("cellmon_sparkplug_lost_messages", "messages those gaps say were lost"),
    "sparkplug_unknown_alias": (
        "cellmon_sparkplug_unknown_aliases",
        "metrics with an alias no birth declared",
    ),
    "sparkplug_rebirth_requests": ("cellmon_sparkplug_rebirth_requests", "rebirth requests sent"),
}
REJECTED = ("cellmon_rejected_objects", "objects rejected, by reason (contract section 1)")
JOURNAL_FILES = (journal.INBOX_FILE, journal.JOURNAL_FILE)


class ListenError(Exception):
    """``metrics.listen`` cannot be served (a port in use, an unknown host): not started."""


class JournalCollector(Collector):
    """The self-metrics, read from the journal files at each scrape."""

    def __init__(self, cfg: Config, session_up: Callable[[], bool]) -> None:
        self.cfg = cfg
        self.session_up = session_up

    def collect(self) -> Iterable[Metric]:
        """One family per self-metric, and the health of ``/health`` as gauges."""
        reading = read_metrics(self.cfg.state_path)
        m = reading.metrics
        for name, (metric, doc) in COUNTERS.items():
            yield CounterMetricFamily(metric, doc, value=getattr(m, name))
        rejected = CounterMetricFamily(*REJECTED, labels=["reason"])
        for reason, count in sorted(m.rejected_by_reason.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield GaugeMetricFamily(
            "cellmon_buffered_lines", "lines waiting in the journal for the database", m.buffered
        )
        yield GaugeMetricFamily("cellmon_lag_seconds", "age of the oldest of them", m.lag_s)
        yield from self._journal_sizes()
        yield from self._states(reading)
        info = InfoMetricFamily("cellmon", "this process: its instance and potlines")
        potlines = ",".join(p.id for p in self.cfg.plant.potlines)
        info.add_metric([], {"cellmon_instance": self.cfg.instance_name, "potlines": potlines})
        yield info

    def _journal_sizes(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily(
            "cellmon_journal_bytes", "size of a journal file with its WAL", labels=["file"]
        )
        for name in JOURNAL_FILES:
            paths = [self.cfg.state_path / name, self.cfg.state_path / f"{name}-wal"]
            sizes.add_metric([name], sum(p.stat().st_size for p in paths if p.exists()))
        yield sizes

    def _states(self, reading: Reading) -> Iterator[Metric]:
        write = reading.write
        yield GaugeMetricFamily(
            "cellmon_broker_connected", "1 while the broker session is up", self.session_up()
        )
        yield GaugeMetricFamily(
            "cellmon_database_writable",
            "1 when the last write succeeded or nothing waits to be written",
            database_ok(reading),
        )
        yield GaugeMetricFamily(
            "cellmon_last_write_timestamp_seconds",
            "when the database last took a write (0: never)",
            write.wrote_ns / 1e9,
        )
        yield GaugeMetricFamily(
            "cellmon_last_write_failure_timestamp_seconds",
            "when the database last refused a write (0: never)",
            write.failed_ns / 1e9,
        )


def database_ok(reading: Reading) -> bool:
    """The database side of health: the last write was taken, or nothing waits for one."""
    return reading.metrics.buffered == 0 or not reading.write.failing


def _iso(ns: int) -> str | None:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat() if ns else None


def health(reading: Reading, session_up: bool, broker: str) -> tuple[bool, dict[str, Any]]:
    """(healthy, JSON body) of ``/health``; the body's ``reasons`` say what is wrong."""
    m, write = reading.metrics, reading.write
    reasons = [] if session_up else [f"broker: no session with the MQTT broker at {broker}"]
    if not database_ok(reading):
        reasons.append(
            f"database: the last write failed at {_iso(write.failed_ns)} "
            f"and {m.buffered} lines wait: {write.failure}"
        )
    body = {
        "status": "unhealthy" if reasons else "ok",
        "broker_session": session_up,
        "database": "failing" if not database_ok(reading) else "ok",
        "last_write": _iso(write.wrote_ns),
        "last_write_failure": _iso(write.failed_ns),
        "lag_s": m.lag_s,
        "buffered": m.buffered,
        "reasons": reasons,
    }
    return not reasons, body


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape: Prometheus asks every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Exporter:
    """The HTTP server of one process.

    Bound at construction, so that a port in use refuses the start before anything runs.
    Call order: ``start()`` once, then ``stop()`` once.
    """

    def __init__(self, cfg: Config, session_up: Callable[[], bool]) -> None:
        address = cfg.metrics.address
        assert address is not None
        host, port = address
        self.cfg, self.session_up = cfg, session_up
        self.broker = f"{cfg.mqtt.host}:{cfg.mqtt.port}"
        registry = CollectorRegistry(auto_describe=False)
        for extra in (ProcessCollector, PlatformCollector, GCCollector):
            extra(registry=registry)
        registry.register(JournalCollector(cfg, session_up))
        self._metrics_app = make_wsgi_app(registry)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server: type[ThreadingWSGIServer] = type(
            "Server", (ThreadingWSGIServer,), {"address_family": family}
        )
        try:
            self.server = make_server(host, port, self._app, server, handler_class=_Quiet)
        except OSError as err:
            why = err.strerror or str(err)
            msg = f"metrics.listen {cfg.metrics.listen}: cannot listen on {host}:{port} ({why})"
            raise ListenError(msg) from err
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> None:
        """Serve in a thread of its own."""
        self._thread.start()
        log.info("serving /metrics and /health on %s", self.cfg.metrics.listen)

    def stop(self) -> None:
        """Stop serving and close the port."""
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return list(self._metrics_app(environ, start_response))
        if path == "/health":
            return self._health(start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics or /health\n"]

    def _health(self, start_response: Callable[..., Any]) -> list[bytes]:
        try:
            ok, body = health(read_metrics(self.cfg.state_path), self.session_up(), self.broker)
        except journal.JOURNAL_ERRORS as err:
            ok, body = False, {"status": "unhealthy", "reasons": [f"journal: {err}"]}
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [orjson.dumps(body)]
