"""The five consumers of ``make bench-peers``, each started, watched and stopped alike.

- ``node-red``: the flow of benchmarks/nodered.py;
- ``cellmon-paho`` and ``cellmon-mqtt5``: ``cellmon run`` with the shipped rules and
  ``mqtt: {client: paho}`` / ``{client: mqtt5}``; a variant whose config ``cellmon check``
  refuses (exit 2: a cellmon without that client) is skipped and the report says why.
  cellmon-paho falls back to a config without the key, paho being the only client there is
  before ``mqtt.client`` exists;
- ``bare-paho`` and ``bare-mqtt5``: the ceilings of benchmarks/subscribers.py.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.nodered import NODE_RED_ID, start_node_red
from benchmarks.pipeline import (
    TOPICS,
    cellmon_config,
    cellmon_sessions,
    influx_count,
    register_session,
    start_pipeline,
    stop_pipeline,
)
from benchmarks.subscribers import (
    MQTT5,
    PAHO,
    BareSubscriber,
    mqtt5_available,
    register_mqtt5_session,
)
from tests.harness import ROOT
from tests.servers import InfluxV1


@dataclass(frozen=True)
class Target:
    """Where one run of a consumer goes: its broker, its database, what it must receive."""

    work: Path
    port: int
    influx: InfluxV1
    n: int  # messages it must receive (and points it must write, for a pipeline)
    label: str  # the mode: "drained", "paced-400", ...; prefixes the database's name
    cells: int  # the potlines the cellmon config owns: potlines_config(cells)
    shards: int = 0

    def db(self, consumer: str) -> str:
        return f"{self.label}_{consumer}".replace("-", "_")


class Consumer(Protocol):
    name: str
    client_id: str
    writes: bool  # into InfluxDB: its rate is in points, counted there

    def start(self, target: Target) -> int:
        """Start, wait until connected; the pid whose process tree is measured."""
        ...

    def arrived(self) -> int: ...

    def describe(self) -> str: ...

    def internal(self) -> tuple[float, float] | None:
        """A bare subscriber's own (seconds first to last message, CPU s at the first)."""
        ...

    def stop(self) -> None: ...


class Bare:
    writes = False

    def __init__(self, name: str, script: str, client_id: str, window: int) -> None:
        self.name, self.client_id = name, client_id
        self.script, self.window = script, window
        self.sub = BareSubscriber(script, client_id, window)
        self.log = Path()

    def start(self, target: Target) -> int:
        self.sub = BareSubscriber(self.script, self.client_id, self.window)
        self.log = target.work / f"{self.name}.log"
        target.work.mkdir(parents=True, exist_ok=True)
        self.sub.start(target.port, target.n, TOPICS, self.log)
        assert self.sub.proc is not None
        return self.sub.proc.pid

    def arrived(self) -> int:
        return self.sub.arrived()

    def describe(self) -> str:
        return f"{self.sub.lines[-3:]} {self.log.read_text()[-2000:]}"

    def internal(self) -> tuple[float, float] | None:
        done = self.sub.done()
        return None if done is None else (done[1], done[2])

    def stop(self) -> None:
        self.sub.stop()


class InfluxConsumer:
    """A consumer that writes points into its own database; progress is counted there."""

    writes = True
    name = ""
    client_id = ""

    def __init__(self) -> None:
        self.influx: InfluxV1 | None = None
        self.db = ""
        self.log = Path()
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self, target: Target) -> None:
        self.influx, self.db = target.influx, target.db(self.name)
        target.influx.create_database(self.db)

    def arrived(self) -> int:
        assert self.influx is not None
        return influx_count(self.influx, self.db)

    def describe(self) -> str:
        return self.log.read_text()[-2000:]

    def internal(self) -> tuple[float, float] | None:
        return None


class NodeRed(InfluxConsumer):
    name = "node-red"
    client_id = NODE_RED_ID

    def start(self, target: Target) -> int:
        self.prepare(target)
        work = target.work / self.name
        self.proc, self.log = start_node_red(work, target.port, target.influx, self.db)
        return self.proc.pid

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(60)


class Cellmon(InfluxConsumer):
    def __init__(self, name: str, client_id: str, mqtt_options: str) -> None:
        super().__init__()
        self.name, self.client_id, self.mqtt_options = name, client_id, mqtt_options

    def start(self, target: Target) -> int:
        self.prepare(target)
        config = cellmon_config(
            target.work / self.name,
            target.port,
            target.influx,
            self.db,
            client_id=self.client_id,
            cells=target.cells,
            mqtt_options=self.mqtt_options,
        )
        sessions = len(cellmon_sessions(target.cells, target.shards, self.client_id))
        self.proc, self.log = start_pipeline(config, sessions, target.shards)
        return self.proc.pid

    def stop(self) -> None:
        assert self.proc is not None
        stop_pipeline(self.proc, self.log)


def cellmon_clients(receive_maximum: int) -> dict[str, tuple[str, ...]]:
    """Each cellmon variant's mqtt: keys, tried in turn: the first its config accepts runs."""
    return {
        "cellmon-paho": ("  client: paho\n", ""),
        "cellmon-mqtt5": (
            f"  client: mqtt5\n  receive_maximum: {receive_maximum}\n",
            "  client: mqtt5\n",
        ),
    }


def refusal(mqtt_options: str, influx: InfluxV1) -> str | None:
    """None when ``cellmon check`` accepts a config with these mqtt: keys, else its verdict."""
    with tempfile.TemporaryDirectory(prefix="cellmon-bench-check-") as tmp:
        config = cellmon_config(Path(tmp), 1883, influx, "check", mqtt_options=mqtt_options)
        cli = [sys.executable, "-m", "collector.commands.cli", "check", "--config", str(config)]
        done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return None
    if done.returncode == 2:
        lines = done.stderr.strip().splitlines() or ["(nothing on stderr)"]
        return lines[0].replace(str(config), "cellmon.yaml")
    msg = f"cellmon check exited {done.returncode}: {done.stderr[-2000:]}"
    raise SystemExit(msg)


def consumers(influx: InfluxV1, window: int) -> tuple[list[Consumer], dict[str, str]]:
    """The consumers to run, in order, and a note for each one skipped or run differently.

    ``window``: the Receive Maximum of cellmon-mqtt5 and of the bare compiled subscriber.
    """
    notes: dict[str, str] = {}
    chosen: list[Consumer] = [NodeRed()]
    for name, options in cellmon_clients(window).items():
        refused = []
        for option in options:
            if (why := refusal(option, influx)) is None:
                chosen.append(Cellmon(name, f"bench-{name}", option))
                if refused:
                    ran = option.strip().replace("\n ", ",") or "no mqtt.client key"
                    notes[name] = f"ran with {ran}; refused: {refused[0]}"
                break
            refused.append(why)
        else:
            keys = options[0].strip().replace("\n ", ",")
            notes[name] = f"skipped: config with `{keys}` refused: {refused[0]}"
    chosen.append(Bare("bare-paho", PAHO, "bench-bare-paho", window))
    if (why := mqtt5_available()) is None:
        chosen.append(Bare("bare-mqtt5", MQTT5, "bench-bare-mqtt5", window))
    else:
        notes["bare-mqtt5"] = f"skipped: {why}"
    return chosen, notes


def register(consumer: Consumer, target: Target) -> None:
    """The consumer's persistent sessions, so the broker keeps what is sent before it runs."""
    if isinstance(consumer, Bare) and consumer.script is MQTT5:
        register_mqtt5_session(target.port, consumer.client_id, TOPICS, consumer.window)
        return
    sessions: dict[str, tuple[str, ...]] = {consumer.client_id: (TOPICS,)}
    if isinstance(consumer, Cellmon):
        sessions = cellmon_sessions(target.cells, target.shards, consumer.client_id)
    for client_id, filters in sessions.items():
        register_session(target.port, client_id, filters)
