"""The worker process: processor stage and sink stage, beside the MQTT process.

They run in a process of their own so that the MQTT thread, which must acknowledge the
broker within milliseconds, never waits for the interpreter lock behind them; the two
processes meet only in the journal files.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from multiprocessing.synchronize import Event as ProcessEvent

from collector.config.models import Config, ConfigError, load_rules
from collector.engine.engine import Engine
from collector.journal import locks
from collector.journal import store as journal
from collector.sinks import SINKS, Sink
from collector.sinks.alerts import AlertFormat, AlertPublisher
from collector.sinks.drain import Drain
from collector.source.mqtt import Connection
from processors.ae import AESettings, AnodeEffectProcessor, Pfc
from processors.alarms import AlarmProcessor
from processors.anode_cycle import AnodeCycleProcessor, AnodeSettings, AnodeTargets, Response
from processors.base import Processor
from processors.derived import DerivedProcessor
from processors.energy import Goal
from processors.events import EventPoints
from processors.periods import Calendar
from processors.sec import SecProcessor, SecSettings

log = logging.getLogger(__name__)

REJECTED_FILE = "rejected.lp"
WORKER_LOCK = "worker.lock"
PARENT_CHECK_S = 0.5
FINISH_MARGIN_S = 30.0
"""Beyond ``sink.shutdown_s``: for the engine to finish and for one last write to time out."""
EXIT_BUFFERED = 3
"""The worker's exit code, and so ``cellmon run``'s, when points stay buffered on disk."""


def sec_settings(cfg: Config) -> SecSettings:
    """The kWh/t processor's view of the config."""
    plant = cfg.plant
    goals = {
        p.id: Goal(
            current_efficiency=p.current_efficiency,
            baseline_kwh_per_t=p.baseline_sec_kwh_per_t,
            savings_goal_kwh_per_t=cfg.targets_for(p.id).sec_savings_kwh_per_t,
            tariff_cny_per_kwh=plant.tariff_cny_per_kwh,
        )
        for p in plant.potlines
    }
    return SecSettings(
        calendar=_calendar(cfg),
        goals=goals,
        max_gap_s=plant.max_gap_s,
        update_interval_s=plant.kpi_update_s,
        complete_grace_s=plant.complete_grace_s,
    )


def anode_settings(cfg: Config) -> AnodeSettings:
    """The anode-cycle processor's view of the config."""
    targets = {}
    for p in cfg.plant.potlines:
        t = cfg.targets_for(p.id)
        targets[p.id] = AnodeTargets(
            t.anode_cycle_days, t.anode_cycle_tolerance_days, t.anode_block
        )
    r = cfg.anode_response
    return AnodeSettings(
        calendar=_calendar(cfg),
        targets=targets,
        complete_grace_s=cfg.plant.complete_grace_s,
        response=Response(r.band_v, r.window_s, r.pre_window_s),
    )


def ae_settings(cfg: Config) -> AESettings:
    """The anode-effect processor's view of the config."""
    potlines = cfg.plant.potlines
    pfc = cfg.pfc
    return AESettings(
        calendar=_calendar(cfg),
        thresholds_v={p.id: cfg.targets_for(p.id).anode_effect_threshold_v for p in potlines},
        current_efficiency={p.id: p.current_efficiency for p in potlines},
        pfc=Pfc(pfc.slope_cf4, pfc.c2f6_ratio, pfc.gwp_cf4, pfc.gwp_c2f6),
        min_duration_s=pfc.min_duration_s,
        max_gap_s=cfg.plant.max_gap_s,
        update_interval_s=cfg.plant.kpi_update_s,
        complete_grace_s=cfg.plant.complete_grace_s,
    )


def _calendar(cfg: Config) -> Calendar:
    return Calendar(cfg.plant.timezone, cfg.plant.shift_times)


def rule_constants(cfg: Config) -> dict[str, dict[str, float]]:
    """Each potline's numeric settings, by the names rule expressions use."""
    constants = {}
    for p in cfg.plant.potlines:
        t = cfg.targets_for(p.id)
        constants[p.id] = {
            "current_efficiency": p.current_efficiency,
            "baseline_sec_kwh_per_t": p.baseline_sec_kwh_per_t,
            "anodes_per_cell": float(p.anodes_per_cell),
            "sec_savings_kwh_per_t": t.sec_savings_kwh_per_t,
            "anode_cycle_days": t.anode_cycle_days,
            "anode_cycle_tolerance_days": t.anode_cycle_tolerance_days,
            "anode_effect_threshold_v": t.anode_effect_threshold_v,
        }
    return constants


def rule_processors(cfg: Config) -> list[Processor]:
    """The processors the rules files configure: rebuilt when the rules are reloaded."""
    return [
        DerivedProcessor(cfg.rules.derived, rule_constants(cfg)),
        AlarmProcessor(cfg.rules.alarms, rule_constants(cfg)),
    ]


def build_processors(cfg: Config) -> list[Processor]:
    """The processors, in the order they see each batch: the one place to register one.

    Derived fields come first, so alarms can watch them; the first processor with a
    ``derive`` method also adds its fields to the raw ``cell`` points (see Engine).
    """
    return [
        *rule_processors(cfg),
        EventPoints(),
        SecProcessor(sec_settings(cfg)),
        AnodeCycleProcessor(anode_settings(cfg)),
        AnodeEffectProcessor(ae_settings(cfg)),
    ]


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


def build_engine(cfg: Config, *, alerts: bool = True) -> Engine:
    """The processor stage over the state directory's journal.

    ``alerts=False`` for history (a replay): its alarms are written, and page nobody.
    """
    state = cfg.state_path
    store = journal.Store(journal.connect_inbox(state), journal.connect_journal(state))
    topic = cfg.alerts.topic if alerts else None
    return Engine(
        store,
        build_processors(cfg),
        instance=cfg.instance_name,
        metrics_interval_s=cfg.metrics_interval_s,
        dedup_window_s=cfg.ingest.dedup_window_s,
        alerts=AlertFormat(topic) if topic else None,
        rejected_path=state / REJECTED_FILE,
    )


def build_alerts(cfg: Config) -> AlertPublisher | None:
    """The alert publisher, when alerts have a topic."""
    if cfg.alerts.topic is None:
        return None
    queue = journal.AlertQueue(journal.connect_journal(cfg.state_path))
    return AlertPublisher(connection(cfg), queue, qos=cfg.alerts.qos, retain=cfg.alerts.retain)


def build_drain(cfg: Config) -> Drain:
    """The sink stage over the state directory's outbox."""
    s = cfg.sink
    return Drain(
        journal.Outbox(journal.connect_journal(cfg.state_path)),
        build_sink(cfg),
        rejected_path=cfg.state_path / REJECTED_FILE,
        batch_lines=s.batch_lines,
        flush_interval_s=s.flush_interval_s,
        max_buffer_bytes=int(s.max_buffer_mib * 2**20),
        retry_max_s=s.retry_max_s,
        shutdown_s=s.shutdown_s,
    )


def _reload(cfg: Config, engine: Engine) -> None:
    """Rebuild the rules processors from the files, which the MQTT process found valid."""
    try:
        rules = load_rules(cfg.source)
    except ConfigError as err:  # changed again since: the MQTT process reports it
        log.warning("rules changed while reloading; keeping these (%s)", err.issues[0])
        return
    try:
        processors = rule_processors(cfg.model_copy(update={"rules": rules}))
    except Exception:  # a rule the check let through and the processor refuses: keep the old
        log.exception("the reloaded rules could not be built; keeping the rules in force")
        return
    engine.replace(processors)


def run_worker(cfg: Config, finish: ProcessEvent, reload: ProcessEvent, log_level: str) -> None:
    """Process and write until ``finish`` is set, then finish the rest and return.

    ``finish`` means the MQTT side has committed its last message; ``reload`` that it found
    new valid rules, which the worker loads for itself. The database has ``sink.shutdown_s``
    in all to take the rest; what it did not take stays buffered, and the worker exits with
    ``EXIT_BUFFERED`` to say so.

    Signals are the MQTT process's business: it decides when the worker finishes, so a
    Ctrl-C or a SIGTERM sent to the whole process group cannot cut the worker short.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parent = os.getppid()
    # a worker orphaned by a killed MQTT process may still be finishing: let it
    lock = locks.hold(cfg.state_path / WORKER_LOCK, wait_s=cfg.sink.shutdown_s + FINISH_MARGIN_S)
    engine, drain, alerts = build_engine(cfg), build_drain(cfg), build_alerts(cfg)
    engine_stop, drain_finishing, alerts_stop = (threading.Event() for _ in range(3))
    threads = [
        threading.Thread(target=engine.run, args=(engine_stop,), name="engine"),
        threading.Thread(target=drain.run, args=(drain_finishing,), name="drain"),
    ]
    if alerts is not None:
        threads.append(threading.Thread(target=alerts.run, args=(alerts_stop,), name="alerts"))
    for t in threads:
        t.start()
    while not finish.wait(PARENT_CHECK_S):
        if os.getppid() != parent:
            log.error("the MQTT process is gone; finishing what was received")
            break
        if reload.is_set():
            reload.clear()
            _reload(cfg, engine)
    engine_stop.set()
    threads[0].join()
    drain_finishing.set()
    threads[1].join()
    try:
        engine.finish()  # open KPIs and the last self-metrics, after the drain has written
    except Exception:
        log.exception("could not commit the open KPIs; they are recomputed at the next start")
    drain.run(drain_finishing)
    drain.sink.close()
    alerts_stop.set()  # unsent alerts stay in the journal for the next start
    for t in threads[2:]:
        t.join()
    lock.close()
    _exit_if_buffered(cfg, drain)


def _exit_if_buffered(cfg: Config, drain: Drain) -> None:
    """Exit with ``EXIT_BUFFERED`` when points wait on disk, so a supervisor sees it."""
    buffered = drain.outbox.size()[1]
    if buffered:
        log.error(
            "%d points still buffered in %s; they are written at the next start",
            buffered,
            cfg.state_path,
        )
        raise SystemExit(EXIT_BUFFERED)
