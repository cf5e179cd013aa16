"""Several shards of one config in one ``cellmon run``: a process per shard, supervised.

Each shard is a whole pipeline over its own potlines (contract 5.1): its MQTT connection,
its journal and its worker, so a plant's ingest uses every core of the machine instead of
one paho thread. The shards share nothing but the broker and the database; this process
only starts them, passes signals on and reports the worst exit.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping
from multiprocessing.process import BaseProcess

from collector.config.models import Config
from collector.journal import locks
from collector.runtime.service import SERVICE_LOCK, run_service, signal_events

log = logging.getLogger(__name__)

CHECK_S = 0.5
EXIT_SHARD_DIED = 1


def run_sharded(cfg: Config, log_level: str) -> int:
    """Run every shard of ``cfg`` until SIGINT/SIGTERM; the highest exit code of them.

    A shard that exits on its own stops the others (exit 1), so the supervisor (systemd,
    Docker) restarts the whole set; SIGHUP is passed to every shard (rules reload).
    """
    lock = locks.hold(cfg.state_path / SERVICE_LOCK)  # no plain `run` on the same directory
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
    shards = {
        s.name: ctx.Process(
            target=_shard_main, args=(cfg.shard(s), s.name, log_level), name=f"cellmon-{s.name}"
        )
        for s in cfg.shards
    }
    stop, hangup = signal_events()
    for proc in shards.values():
        proc.start()
    log.info("running %d shards: %s", len(shards), ", ".join(shards))
    try:
        died = _supervise(shards, stop, hangup)
    finally:
        _signal(shards, signal.SIGTERM)
        for proc in shards.values():
            proc.join()
        lock.close()
    codes = {name: proc.exitcode or 0 for name, proc in shards.items()}
    log.info("shards stopped: %s", ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    return max(EXIT_SHARD_DIED if died else 0, *codes.values())


def _supervise(
    shards: Mapping[str, BaseProcess], stop: threading.Event, hangup: threading.Event
) -> bool:
    """Wait for the stop; True when a shard exited before it."""
    while not stop.wait(CHECK_S):
        gone = [name for name, proc in shards.items() if not proc.is_alive()]
        if gone:
            log.error("shard %s exited; stopping the others (restart the service)", gone[0])
            return True
        if hangup.is_set():
            hangup.clear()
            _signal(shards, signal.SIGHUP)
    return False


def _signal(shards: Mapping[str, BaseProcess], sig: signal.Signals) -> None:
    for proc in shards.values():
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, sig)


def _shard_main(cfg: Config, name: str, log_level: str) -> None:
    """One shard's process: the single-instance loop, its log lines named for it."""
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s"
    )
    raise SystemExit(run_service(cfg, log_level))
