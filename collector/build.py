"""The only code that turns the config into running parts, and the registries of those parts.

Config and runtime are two things: the frozen ``Config`` holds every default, and only the
objects built here hold sockets, threads and the journal. Every command (``run``,
``replay``, ``demo``, ``check --sample``) builds through these functions, so they cannot
drift apart.

Adding a part is one module plus one line:
- a processor: its module in ``processors/`` and an entry in ``PROCESSORS`` (in the order
  processors see each batch);
- a source: its module in ``collector/source/`` and a line in ``SOURCES``;
- a sink: its module in ``collector/sinks/`` with a ``build`` and a line in ``SINKS``, and
  its ``sink:`` section in ``collector.sinks.options``, which the config's ``sink`` union
  is made from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from collector.config.models import Config
from collector.journal import store as journal
from collector.journal.outbox import AlertQueue, Outbox
from collector.settings import (
    ae_settings,
    ae_thresholds,
    anode_settings,
    calendar,
    clock_settings,
    rule_constants,
    sec_settings,
    settle_settings,
    tap_settings,
)
from collector.sinks.alerts import AlertFormat, AlertPublisher
from collector.source.deadletter import DeadLetters
from collector.source.decode import Decoder
from collector.source.mqtt_client import Connection
from collector.source.topics import TopicRouter, TopicTemplate, compile_template
from processors.base import Processor, Recomputable

if TYPE_CHECKING:  # built where they are used: see "The source stage" and the stages below
    from collector.engine.engine import Engine
    from collector.engine.recalc import Reach
    from collector.sinks.base import Sink
    from collector.sinks.drain import Drain
    from collector.source.mqtt import MqttSource

NS = 1_000_000_000
HISTORY_STEP_S = 3600
"""A recalculation reads history an hour at a time: 1.4 million samples of 400 cells at 1 Hz."""
DEAD_LETTER_FILE = "deadletter.jsonl"
REJECTED_FILE = "rejected.lp"


class ProcessorEntry(NamedTuple):
    """A registered processor: how to build it, and whether the rules files configure it."""

    build: Callable[[Config], Processor]
    rules: bool = False  # built from the rules: rebuilt when they are reloaded


# The processor and sink stages run in the worker. Their modules (numpy and every processor)
# are imported by the functions that build them, so the MQTT process, which builds only
# the source, never loads them: 14 MiB less resident in every instance and shard (measured).


def _derived(cfg: Config) -> Processor:
    from processors.rules.derived import DerivedProcessor

    return DerivedProcessor(cfg.rules.derived, rule_constants(cfg))


def _alarms(cfg: Config) -> Processor:
    from processors.rules.alarms import AlarmProcessor

    return AlarmProcessor(cfg.rules.alarms, rule_constants(cfg))


def _events(cfg: Config) -> Processor:
    from processors.events import EventPoints

    return EventPoints()


def _sec(cfg: Config) -> Processor:
    from processors.kpi.sec import SecProcessor

    return SecProcessor(sec_settings(cfg))


def _anodes(cfg: Config) -> Processor:
    from processors.kpi.anode_cycle import AnodeCycleProcessor

    return AnodeCycleProcessor(anode_settings(cfg))


def _anode_settle(cfg: Config) -> Processor:
    from processors.kpi.anode_settle import AnodeSettleProcessor

    return AnodeSettleProcessor(settle_settings(cfg))


def _anode_effects(cfg: Config) -> Processor:
    from processors.kpi.ae import AnodeEffectProcessor

    return AnodeEffectProcessor(ae_settings(cfg))


def _minutes(cfg: Config) -> Processor:
    from processors.kpi.minutes import MinuteProcessor

    return MinuteProcessor(calendar(cfg))


def _tap_cycles(cfg: Config) -> Processor:
    from processors.kpi.taps import TapCycleProcessor

    return TapCycleProcessor(tap_settings(cfg))


def _clock(cfg: Config) -> Processor:
    from processors.kpi.clock import ClockProcessor

    return ClockProcessor(clock_settings(cfg))


PROCESSORS: tuple[ProcessorEntry, ...] = (
    ProcessorEntry(_derived, rules=True),  # first: alarms and raw points see derived fields
    ProcessorEntry(_alarms, rules=True),
    ProcessorEntry(_events),
    ProcessorEntry(_sec),
    ProcessorEntry(_anodes),
    ProcessorEntry(_anode_settle),
    ProcessorEntry(_anode_effects),
    ProcessorEntry(_minutes),
    ProcessorEntry(_tap_cycles),
    ProcessorEntry(_clock),
)

__all__ = [  # the processors' views, read through this module by the commands and tests
    "ae_settings",
    "ae_thresholds",
    "anode_settings",
    "calendar",
    "clock_settings",
    "rule_constants",
    "sec_settings",
    "settle_settings",
    "tap_settings",
]


def processors(cfg: Config) -> list[Processor]:
    """Every registered processor, in the order they see each batch."""
    return [entry.build(cfg) for entry in PROCESSORS]


def rule_processors(cfg: Config) -> list[Processor]:
    """The processors the rules files configure: rebuilt when the rules are reloaded."""
    return [entry.build(cfg) for entry in PROCESSORS if entry.rules]


def recomputable_processors(cfg: Config) -> list[Processor]:
    """The KPI processors, whose periods a recalculation redoes from history."""
    return [p for p in processors(cfg) if isinstance(p, Recomputable)]


def raw_processors(cfg: Config) -> list[Processor]:
    """What a replay runs before the recalculation: all but the KPIs, which it redoes."""
    return [p for p in processors(cfg) if not isinstance(p, Recomputable)]


def reach(cfg: Config) -> Reach:
    """How much history around its periods a recalculation reads.

    The gap limit on each side (the intervals that cross the periods' bounds), and three of
    the longest target anode cycles of events before (the changes whose cycles end inside)
    or the longest tap cycle if longer (the taps whose cycles end inside). The samples of
    a tap cycle before the periods and of an anode change's level and settling outside them
    are read for those cells alone (``Preceded``, ``Followed``), not here.
    """
    from collector.engine.recalc import Reach

    targets = [cfg.targets, *(cfg.targets_for(p.id) for p in cfg.plant.potlines)]
    anodes_s = 3 * max(t.anode_cycle_days for t in targets) * 86_400
    taps_s = max(t.tap_cycle_max_h for t in targets) * 3600
    return Reach(
        context_ns=int(cfg.plant.max_gap_s * NS),
        events_before_ns=int(max(anodes_s, taps_s) * NS),
        step_ns=HISTORY_STEP_S * NS,
    )


# The source stage. The MQTT client (paho, mqtt5) and Sparkplug's protobuf are imported by
# the functions that build them, as the processors are for the MQTT process: the worker
# imports this module and builds neither (4.3 MiB less resident in it, measured).


def templates(cfg: Config) -> list[TopicTemplate]:
    """The compiled input topic templates of the rules."""
    return [compile_template(r.topic, r.kind, r.qos, r.mapping(), r.name) for r in cfg.rules.inputs]


def decoder(cfg: Config) -> Decoder:
    """A decoder of the rules' inputs, with the configured limits."""
    owned = frozenset(p.id for p in cfg.plant.potlines)
    sparkplug = cfg.rules.sparkplug
    host = None
    if sparkplug:
        from collector.source.sparkplug.host import Host
        from collector.source.sparkplug.naming import compile_input

        host = Host([compile_input(r) for r in sparkplug])
    return Decoder(TopicRouter(templates(cfg), owned), cfg.ingest, host)


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
        client=m.client,
        receive_maximum=m.receive_maximum,
    )


def dead_letters(cfg: Config) -> DeadLetters:
    """The dead-letter store of the state directory."""
    return DeadLetters(cfg.state_path / DEAD_LETTER_FILE, cfg.ingest.dead_letter_max_bytes)


def mqtt_source(cfg: Config, letters: DeadLetters) -> MqttSource:
    """The MQTT source feeding the state directory's inbox."""
    from collector.source.mqtt import MqttSource

    return MqttSource(
        connection(cfg),
        decoder(cfg),
        journal.Inbox(journal.connect_inbox(cfg.state_path, cache_kib=journal.APPEND_CACHE_KIB)),
        letters,
        ingest=cfg.ingest,
    )


SOURCES: dict[str, Callable[[Config, DeadLetters], MqttSource]] = {
    "mqtt": mqtt_source,
}


# The processor and sink stages (imported where built: see the processors above).


def engine(cfg: Config, *, replay: bool = False) -> Engine:
    """The processor stage over the state directory's journal.

    ``replay``: a replay's raw stage: no KPIs, and alarms written but paging nobody.
    """
    from collector.engine.engine import Engine

    state = cfg.state_path
    store = journal.Store(journal.connect_inbox(state), journal.connect_journal(state))
    topic = None if replay else cfg.alerts.topic
    return Engine(
        store,
        raw_processors(cfg) if replay else processors(cfg),
        instance=cfg.instance_name,
        metrics_interval_s=cfg.metrics_interval_s,
        dedup_window_s=cfg.ingest.dedup_window_s,
        alerts=AlertFormat(topic) if topic else None,
        rejected_path=state / REJECTED_FILE,
    )


def _influx(cfg: Config) -> Sink:
    from collector.sinks import influx

    return influx.build(cfg)


def _file(cfg: Config) -> Sink:
    from collector.sinks import file

    return file.build(cfg)


SINKS: dict[str, Callable[[Config], Sink]] = {
    "influx": _influx,
    "file": _file,
}
"""How each ``sink:`` type of ``collector.sinks.options.SINK_OPTIONS`` is built."""


def sink(cfg: Config) -> Sink:
    """The configured sink; its secret comes from the environment, never from YAML."""
    return SINKS[cfg.sink.type](cfg)


def drain(cfg: Config) -> Drain:
    """The sink stage over the state directory's outbox."""
    from collector.sinks.drain import Drain

    return Drain(
        Outbox(journal.connect_journal(cfg.state_path)),
        sink(cfg),
        rejected_path=cfg.state_path / REJECTED_FILE,
        options=cfg.sink,
    )


def alert_publisher(cfg: Config) -> AlertPublisher | None:
    """The alert publisher, when alerts have a topic."""
    if cfg.alerts.topic is None:
        return None
    queue = AlertQueue(journal.connect_journal(cfg.state_path))
    return AlertPublisher(connection(cfg), queue, qos=cfg.alerts.qos, retain=cfg.alerts.retain)


def sink_file(cfg: Config) -> Path | None:
    """The file the file sink writes, or None for another sink."""
    path = getattr(cfg.sink, "path", None)
    return cfg.state_path / path if cfg.sink.type == "file" and path else None
