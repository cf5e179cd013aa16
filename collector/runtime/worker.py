"""The worker process: processor stage and sink stage, beside the MQTT process.

They run in a process of their own so that the MQTT thread, which must acknowledge the
broker within milliseconds, never waits for the interpreter lock behind them; the two
processes meet only in the journal files.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from typing import IO

from collector import build
from collector.config.live import apply_live
from collector.config.loader import load_config, load_rules
from collector.config.models import Config
from collector.config.yamlsource import ConfigError
from collector.engine.engine import Engine
from collector.journal import locks
from collector.runtime.child import FINISH, RELOAD, RELOAD_CONFIG, commands, read_start
from collector.runtime.recalc import Poller
from collector.sinks.drain import Drain

log = logging.getLogger(__name__)

WORKER_LOCK = "worker.lock"
COMMAND_WAIT_S = 0.5
"""Between two looks for backfills and recalculations filed by other commands."""
FINISH_MARGIN_S = 30.0
"""Beyond ``sink.shutdown_s``: for the engine to finish and for one last write to time out."""
EXIT_BUFFERED = 3
"""The worker's exit code, and so ``cellmon run``'s, when points stay buffered on disk."""
GC_THRESHOLDS = (10_000, 10, 10)
"""The worker's garbage-collector generations: a batch allocates about ten container
objects per message (rows, extras, points), so at the default 700 the collector ran 32
times a batch and walked every processor state 18 times a minute: 3 of 22 µs a message at
2,000 cells (benchmarks/worker.py). Reference counting frees all but cycles at once; the
cycles wait a little longer."""


def tune_gc() -> None:
    """Collect less often: what the worker allocates per batch is freed by refcounting."""
    gc.set_threshold(*GC_THRESHOLDS)


def _reload(cfg: Config, engine: Engine) -> Config:
    """Rebuild the rules processors from the files, which the MQTT process found valid.

    The config now in force: ``cfg`` with the new rules, or ``cfg`` when they were not taken.
    """
    try:
        rules = load_rules(cfg.source)
    except ConfigError as err:  # changed again since: the MQTT process reports it
        log.warning("rules changed while reloading; keeping these (%s)", err.issues[0])
        return cfg
    new = cfg.model_copy(update={"rules": rules})
    try:
        processors = build.rule_processors(new)
    except Exception:  # a rule the check let through and the processor refuses: keep the old
        log.exception("the reloaded rules could not be built; keeping the rules in force")
        return cfg
    engine.replace(processors)
    return new


def _reload_config(cfg: Config, engine: Engine) -> Config:
    """Rebuild every processor from the config file and rules the MQTT process took.

    Each takes the place of the one of its name and keeps its state, so a KPI's open
    periods go on with the new current efficiency, baseline or target from their next
    write. Only the live sections are taken (``collector.config.live``): a change that
    needs a restart, made since the MQTT process looked, it refuses at its next look.
    """
    try:
        new = apply_live(cfg, load_config(cfg.source))
    except ConfigError as err:  # changed again since: the MQTT process reports it
        log.warning("config changed while reloading; keeping this one (%s)", err.issues[0])
        return cfg
    if {p.id for p in new.plant.potlines} != {p.id for p in cfg.plant.potlines}:
        log.warning("potlines changed while reloading; keeping the configuration in force")
        return cfg
    try:
        processors = build.processors(new)
    except Exception:  # a setting the check let through and a processor refuses
        log.exception("the reloaded configuration could not be built; keeping the one in force")
        return cfg
    engine.replace(processors)
    return new


def run_worker(cfg: Config, parent: IO[bytes], log_level: str) -> None:
    """Process and write until the MQTT process says finish, then finish the rest and return.

    ``parent`` is the pipe from the MQTT process (``collector.runtime.child``): ``FINISH``
    means it has committed its last message, ``RELOAD`` that it found new valid rules,
    ``RELOAD_CONFIG`` a config file to take live (both loaded by the worker for itself), and
    its end of file that the MQTT process is gone, killed perhaps: what was received is
    finished all the same. The database has
    ``sink.shutdown_s`` in all to take the rest; what it did not take stays buffered, and the
    worker exits with ``EXIT_BUFFERED`` to say so.
    """
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # a worker orphaned by a killed MQTT process may still be finishing: let it
    lock = locks.hold(cfg.state_path / WORKER_LOCK, wait_s=cfg.sink.shutdown_s + FINISH_MARGIN_S)
    engine, drain, alerts = build.engine(cfg), build.drain(cfg), build.alert_publisher(cfg)
    engine.on_output = drain.nudge
    engine_stop, drain_finishing, alerts_stop = (threading.Event() for _ in range(3))
    threads = [
        threading.Thread(target=engine.run, args=(engine_stop,), name="engine"),
        threading.Thread(target=drain.run, args=(drain_finishing,), name="drain"),
    ]
    if alerts is not None:
        threads.append(threading.Thread(target=alerts.run, args=(alerts_stop,), name="alerts"))
    for t in threads:
        t.start()
    recalcs = Poller(cfg, engine)  # backfills and recalculations filed by other commands
    while True:
        said = commands(parent, COMMAND_WAIT_S)
        if said is None:
            log.error("the MQTT process is gone; finishing what was received")
            break
        if RELOAD_CONFIG in said:
            cfg = recalcs.cfg = _reload_config(cfg, engine)
        elif RELOAD in said:
            cfg = recalcs.cfg = _reload(cfg, engine)
        if FINISH in said:
            break
        recalcs.poll()
    engine_stop.set()
    threads[0].join()
    drain_finishing.set()
    drain.nudge()
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


def main() -> None:
    """``python -m collector.runtime.worker``: started by ``WorkerProcess``, fed by its pipe.

    Signals are the MQTT process's business: it decides when the worker finishes (and
    reloads), so a Ctrl-C, SIGTERM or SIGHUP sent to the whole process group cannot cut the
    worker short.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    tune_gc()
    start = read_start(sys.stdin.buffer)
    if start is not None:  # None: the MQTT process was gone before it sent the config
        cfg, log_level = start
        run_worker(cfg, sys.stdin.buffer, log_level)


if __name__ == "__main__":
    main()
