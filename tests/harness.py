"""Helpers for end-to-end tests: a config on disk, ``cellmon run`` as a real process, and a
QoS 1 publisher that waits for every acknowledgement.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from uuid import uuid4

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
# The source's MQTT client (``mqtt.client``) of every config written here; None: the
# default. Tests run with each by the ``mqtt_client`` fixture of tests/end_to_end.
MQTT_CLIENT: str | None = None
DEFAULT_RULES = """\
inputs:
  - name: telemetry
    topic: "smelter/{potline}/{cell}/telemetry"
    kind: telemetry
  - name: events
    topic: "smelter/{potline}/{cell}/event"
    kind: event
"""


def write_config(
    directory: Path,
    *,
    mqtt_port: int,
    influx_url: str,
    database: str,
    client_id: str | None = None,
    metrics_interval_s: float = 1,
    sink_options: str = "",
    extra: str = "",
    rules: str = DEFAULT_RULES,
    mqtt_options: str = "",
    token_env: str = "null",
) -> Path:
    """A complete config for one test, with its own client id, state directory and rules.

    ``rules`` is the text of ``rules/default.yaml``: only the contract's inputs by default,
    so that a test sees the points it asks for and no alarms or derived fields.
    ``mqtt_options`` are more keys of the ``mqtt:`` section (indented two spaces), and
    ``token_env`` names the variable of the database's credentials (none by default).
    """
    client_id = client_id or f"cellmon-test-{uuid4().hex[:8]}"
    if MQTT_CLIENT is not None:
        mqtt_options = f"  client: {MQTT_CLIENT}\n" + mqtt_options
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules").mkdir(exist_ok=True)
    (directory / "rules" / "default.yaml").write_text(rules)
    path = directory / "cellmon.yaml"
    path.write_text(
        f"""\
mqtt:
  host: 127.0.0.1
  port: {mqtt_port}
  client_id: {client_id}
{mqtt_options}influx:
  url: {influx_url}
  api: v1
  database: {database}
  token_env: {token_env}
sink:
  batch_lines: 5000
  flush_interval_s: 0.2
{sink_options}state_dir: {directory / "state"}
metrics_interval_s: {metrics_interval_s}
plant:
  timezone: Asia/Shanghai
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
{extra}"""
    )
    return path


class Pipeline:
    """``cellmon run`` in a subprocess, its log in a file the test can read.

    Every started pipeline is in ``RUNNING`` until it exits, so that the test session can
    kill those a failed test left behind (``tests/conftest.py``).
    """

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        """``env``: variables added to this process's environment, such as secrets."""
        self.config = config
        self.log = log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, timeout_s: float = 30.0) -> None:
        """Start and wait until it is subscribed."""
        self.launch()
        wait_for(self._connected, timeout_s, self.new_log)

    def launch(self) -> None:
        """Start without waiting for the subscription: for a test where the broker is meant to
        refuse it, or one that acts on the pipeline while it starts."""
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "collector.commands.cli",
                    "run",
                    "--config",
                    str(self.config),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # its worker is killed with it (kill_leftovers)
            )
        RUNNING.append(self)

    def _connected(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            msg = f"cellmon exited with {self.proc.returncode}: {self.new_log()}"
            raise AssertionError(msg)
        return "connected to" in self.new_log()

    def new_log(self) -> str:
        """What this run has logged so far."""
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)


RUNNING: list[Pipeline] = []


def kill_leftovers() -> None:
    """Kill the process group of every pipeline a test did not stop, worker included."""
    while RUNNING:
        proc = RUNNING.pop().proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def wait_for(
    condition: Callable[[], object], timeout_s: float, describe: Callable[[], str] = str
) -> None:
    """Poll until the condition holds; fail with a description of the state if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    msg = f"condition not met within {timeout_s} s; state: {describe()}"
    raise AssertionError(msg)


def publish_all(
    port: int,
    messages: Iterable[tuple[str, bytes]],
    qos: int = 1,
    *,
    login: tuple[str, str] | None = None,
    ca_file: Path | None = None,
) -> int:
    """Publish every message and wait until the broker acknowledged all of them.

    ``login`` is (user, password); ``ca_file`` connects with TLS, trusting that CA.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid4().hex[:8]}")
    if login is not None:
        client.username_pw_set(*login)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file))
    client.max_inflight_messages_set(200)
    window = threading.Semaphore(2000)
    client.on_publish = lambda *_: window.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    try:
        for topic, payload in messages:
            window.acquire()
            infos.append(client.publish(topic, payload, qos=qos))
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.loop_stop()
        client.disconnect()
    return len(infos)


def replay(
    path: Path, config: Path, *options: str, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """``cellmon replay FILE --config CONFIG --quiet [OPTIONS]`` as a process, output captured."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.commands.cli",
            "replay",
            str(path),
            "--config",
            str(config),
            "--quiet",
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def accepted_so_far(state: Path) -> int:
    """The inbox's ``accepted`` counter, read beside a running pipeline."""
    uri = f"file:{state / 'inbox.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        row = conn.execute("SELECT value FROM counters WHERE name = 'accepted'").fetchone()
    return int(row[0]) if row else 0
