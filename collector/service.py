"""Builds the running pipeline from a validated config and runs it until told to stop.

Config and runtime are two things: the frozen ``Config`` comes in, and only the objects
built here hold sockets, threads and the journal.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from collector import journal
from collector.config import Config
from collector.deadletter import DeadLetters
from collector.decode import Decoder, Limits
from collector.drain import Drain
from collector.engine import Engine
from collector.metrics import Metrics
from collector.mqtt_source import Connection, MqttSource
from collector.sinks import SINKS, Sink
from collector.topics import TopicRouter, TopicTemplate, compile_template
from processors.base import Processor
from processors.events import EventPoints

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite"
DEAD_LETTER_FILE = "deadletter.jsonl"
REJECTED_FILE = "rejected.lp"


def build_processors(cfg: Config) -> list[Processor]:
    """The processors, in the order they see each batch: the one place to register one."""
    del cfg  # the KPI processors take their settings from it
    return [EventPoints()]


def build_sink(cfg: Config) -> Sink:
    """The configured sink; its secret comes from the environment, never from YAML."""
    if cfg.sink.type == "file":
        return SINKS["file"](cfg.state_path / cfg.sink.path)
    influx = cfg.influx
    token = cfg.secret(influx.token_env)
    if influx.api == "v1":
        return SINKS["influx_v1"](
            influx.url, influx.database, token, timeout_s=influx.timeout_s, gzip=influx.gzip
        )
    return SINKS["influx_v2"](
        influx.url, influx.bucket, influx.org, token, timeout_s=influx.timeout_s, gzip=influx.gzip
    )


def templates(cfg: Config) -> list[TopicTemplate]:
    """The compiled input topic templates of the rules."""
    return [compile_template(r.topic, r.kind, r.qos) for r in cfg.rules.inputs]


def decoder(cfg: Config) -> Decoder:
    """A decoder with the configured limits."""
    ing = cfg.ingest
    limits = Limits(
        max_payload_bytes=ing.max_payload_bytes,
        future_tolerance_s=ing.future_tolerance_s,
        voltage_min_v=ing.voltage_min_v,
        voltage_max_v=ing.voltage_max_v,
        current_min_ka=ing.current_min_ka,
        current_max_ka=ing.current_max_ka,
    )
    return Decoder(TopicRouter(templates(cfg)), limits)


def connection(cfg: Config) -> Connection:
    """Broker address and credentials, secrets resolved from the environment."""
    m = cfg.mqtt
    tls = m.tls
    return Connection(
        host=m.host,
        port=m.port,
        client_id=m.client_id,
        username=cfg.secret(m.username_env),
        password=cfg.secret(m.password_env),
        tls=tls is not None,
        ca_file=tls.ca_file if tls else None,
        cert_file=tls.cert_file if tls else None,
        key_file=tls.key_file if tls else None,
        keepalive_s=m.keepalive_s,
        reconnect_max_s=m.reconnect_max_s,
    )


@dataclass
class Service:
    """The three stages and their threads: source → engine → drain."""

    cfg: Config
    metrics: Metrics = field(default_factory=Metrics)
    shutdown_grace_s: float = 30.0

    def __post_init__(self) -> None:
        state = self.cfg.state_path
        state.mkdir(parents=True, exist_ok=True)
        path = state / JOURNAL_FILE
        self.dead_letters = DeadLetters(
            state / DEAD_LETTER_FILE, self.cfg.ingest.dead_letter_max_bytes
        )
        self.engine = Engine(
            journal.Store(journal.connect(path)),
            build_processors(self.cfg),
            self.metrics,
            instance=self.cfg.instance_name,
            metrics_interval_s=self.cfg.metrics_interval_s,
            dedup_window_s=self.cfg.ingest.dedup_window_s,
        )
        sink_cfg = self.cfg.sink
        self.drain = Drain(
            journal.Outbox(journal.connect(path)),
            build_sink(self.cfg),
            self.metrics,
            rejected_path=state / REJECTED_FILE,
            batch_lines=sink_cfg.batch_lines,
            flush_interval_s=sink_cfg.flush_interval_s,
            max_buffer_bytes=int(sink_cfg.max_buffer_mib * 2**20),
            retry_max_s=sink_cfg.retry_max_s,
        )
        self.source = MqttSource(
            connection(self.cfg),
            templates(self.cfg),
            decoder(self.cfg),
            journal.Inbox(journal.connect(path)),
            self.dead_letters,
            self.metrics,
            ack_batch=self.cfg.ingest.ack_batch,
            ack_interval_ms=self.cfg.ingest.ack_interval_ms,
            on_commit=self.engine.wakeup.set,
        )
        self._engine_stop = threading.Event()
        self._drain_finishing = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start draining and processing first, then receiving."""
        self._threads = [
            threading.Thread(target=self.engine.run, args=(self._engine_stop,), name="engine"),
            threading.Thread(
                target=self.drain.run,
                args=(self._drain_finishing,),
                kwargs={"grace_s": self.shutdown_grace_s},
                name="drain",
            ),
        ]
        for t in self._threads:
            t.start()
        self.source.start()

    def stop(self) -> None:
        """Stop receiving, process what was received, write it all, then return."""
        log.info("stopping: no more messages taken")
        self.source.stop()
        self._engine_stop.set()
        self.engine.wakeup.set()
        self._threads[0].join()
        self.engine.emit_metrics()
        self._drain_finishing.set()
        self.drain.wakeup.set()
        self._threads[1].join()
        self.drain.sink.close()
        self.dead_letters.close()
        log.info("stopped: %s", self.metrics)

    def journal_path(self) -> Path:
        """Where the journal lives (for tools and tests)."""
        return self.cfg.state_path / JOURNAL_FILE
