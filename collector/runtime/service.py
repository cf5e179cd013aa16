"""Builds the running pipeline from a validated config and runs it until told to stop.

Config and runtime are two things: the frozen ``Config`` comes in, and only the objects
built here hold sockets, threads, processes and the journal. The MQTT source runs in this
process; the processor and sink stages run in a worker process (``collector.runtime.worker``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from collector import build
from collector.config.models import Config
from collector.config.yamlsource import ConfigError
from collector.journal import locks
from collector.journal import store as journal
from collector.journal.locks import Busy
from collector.runtime.child import WorkerProcess
from collector.runtime.exporter import Exporter, ListenError
from collector.runtime.metrics import Metrics, read_metrics
from collector.runtime.reload import Refused, RulesWatcher

log = logging.getLogger(__name__)

SERVICE_LOCK = "cellmon.lock"
EXIT_WORKER_DIED = 1
EXIT_BUSY = 2
EXIT_DAMAGED = 2
"""Not started: a journal file is damaged (the same code as any other refusal to start)."""
EXIT_LISTEN = 2
"""Not started: ``metrics.listen`` cannot be served (its port is in use)."""
SWITCH_INTERVAL_S = 0.0002
"""The MQTT thread releases the GIL on every socket read; with CPython's default of 5 ms it
would wait that long behind another thread each time. 0.2 ms keeps it responsive."""


def signal_events() -> tuple[threading.Event, threading.Event]:
    """(stop, hangup): set by SIGINT or SIGTERM, and by SIGHUP (reload the rules and config)."""
    stop, hangup = threading.Event(), threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hangup.set())
    return stop, hangup


def run_service(cfg: Config, log_level: str) -> int:
    """One instance until SIGINT/SIGTERM: its exit code (see ``cellmon run``).

    SIGHUP, or a change of a rules file or of the config file, reloads the rules and the
    config's plant and targets (see ``collector.runtime.reload``).
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        service = Service(cfg, log_level=log_level)
    except Busy as err:
        log.error("another cellmon runs on this state directory (%s)", err)
        return EXIT_BUSY
    except journal.JournalDamaged as err:
        log.error("%s", err)
        return EXIT_DAMAGED
    except ListenError as err:
        log.error("%s", err)
        return EXIT_LISTEN
    stop, hangup = signal_events()
    service.start()
    log.info("running; state in %s", service.cfg.state_path)
    while not stop.wait(0.5):
        if not service.worker_alive():
            log.error("the worker process died; stopping (restart the service)")
            service.stop()
            return EXIT_WORKER_DIED
        force = hangup.is_set()
        hangup.clear()
        service.check_rules(force=force)
    return service.stop()


class Service:
    """The MQTT source here, the engine and drain in a worker process.

    Call order: ``start()`` once, then ``stop()`` once; ``metrics`` and ``worker_alive``
    at any time in between.
    """

    def __init__(self, cfg: Config, *, log_level: str = "INFO"):
        self.cfg = cfg
        self.log_level = log_level
        state = cfg.state_path
        self._lock = locks.hold(state / SERVICE_LOCK)
        try:
            journal.verify(state)  # before anything opens the files to write
        except journal.JournalDamaged:
            self._lock.close()
            raise
        self.dead_letters = build.dead_letters(cfg)
        self.source = build.SOURCES["mqtt"](cfg, self.dead_letters)
        self.rules = RulesWatcher(cfg)
        self.exporter: Exporter | None = None
        if cfg.metrics.listen is not None:  # bound now: a port in use is refused before the start
            try:
                self.exporter = Exporter(cfg, self.source.connected.is_set)
            except ListenError:
                self.dead_letters.close()
                self._lock.close()
                raise
        self._worker = WorkerProcess("collector.runtime.worker", cfg, log_level)

    def start(self) -> None:
        """Start the worker, then receive, then answer scrapes."""
        self._worker.start()
        self.source.start()
        if self.exporter is not None:
            self.exporter.start()

    def stop(self) -> int:
        """Stop receiving, let the worker process and write it all; its exit code.

        That is 0 when everything was written, ``EXIT_BUFFERED`` when the database refused
        the rest for ``sink.shutdown_s``, 1 when the worker failed.
        """
        log.info("stopping: no more messages taken")
        self.source.stop()
        self._worker.finish()
        code = self._worker.join()
        self.dead_letters.close()
        if self.exporter is not None:  # served to the end: a scrape sees the last writes
            self.exporter.stop()
        log.info("stopped: %s", self.metrics)
        self._lock.close()
        return code

    def check_rules(self, *, force: bool = False) -> None:
        """Reload the rules, or the config file's plant and targets, if they changed.

        Also on ``force`` (SIGHUP). Invalid files are logged with ``file:line``, and a
        config file change that needs a restart with its reason; what is in force stays.
        All outcomes are counted, so a board shows a reload that did not take.
        """
        name = self.cfg.source.name
        try:
            cfg = self.rules.poll(force=force)
        except ConfigError as err:
            for issue in err.issues:
                what = name if issue.file == str(self.cfg.source) else "rules"
                log.error("%s not reloaded: %s", what, issue)
            log.error("the rules and configuration in force stay until the files are fixed")
            self._count(rules_rejected=1)
            return
        except Refused as err:
            log.error("%s not reloaded: %s; the running configuration stays", name, err)
            self._count(rules_rejected=1)
            return
        if cfg is None:
            return
        self.source.reconfigure(build.decoder(cfg))
        if self.rules.config_changed:
            self._worker.reload_config()
        else:
            self._worker.reload()
        self._count(rules_reloads=1)
        r = cfg.rules
        log.info(
            "rules reloaded: %d inputs, %d derived fields, %d alarms",
            *(len(x) for x in (r.inputs, r.derived, r.alarms)),
        )
        if self.rules.config_changed:
            log.info("%s reloaded: plant, targets and pfc in force", name)

    def _count(self, **counts: int) -> None:
        conn = journal.connect_inbox(self.cfg.state_path)
        try:
            journal.add_counters(conn, counts)
        finally:
            conn.close()

    def worker_alive(self) -> bool:
        """False once the worker died (the service should then be restarted)."""
        return self._worker.is_alive()

    @property
    def metrics(self) -> Metrics:
        """A snapshot of every stage's counters and the outbox gauges."""
        return read_metrics(self.cfg.state_path).metrics
