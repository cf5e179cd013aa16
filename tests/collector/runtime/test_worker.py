"""The worker process on its own: it finishes when the MQTT process that started it is gone."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from collector.config.loader import load_config
from collector.runtime.worker import run_worker
from tests.harness import wait_for

CONFIG = """\
sink: {type: file, path: points.lp}
state_dir: state
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
"""
RULES = "inputs:\n  - {name: t, topic: 'smelter/{potline}/{cell}/telemetry', kind: telemetry}\n"


def test_a_worker_whose_mqtt_process_died_before_it_started_finishes_by_itself(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(RULES)
    (tmp_path / "cellmon.yaml").write_text(CONFIG)
    cfg = load_config(tmp_path / "cellmon.yaml")
    ctx = multiprocessing.get_context("spawn")
    finish, reload = ctx.Event(), ctx.Event()
    # the pid of a process that is not its parent: an MQTT process already gone, as when
    # `cellmon run` is killed while its worker is still importing (the worker's parent is
    # then init, whatever os.getppid() says)
    gone = os.getpid() + 1_000_000
    worker = ctx.Process(target=run_worker, args=(cfg, finish, reload, "WARNING", gone))
    worker.start()
    try:
        wait_for(lambda: not worker.is_alive(), 60)
        assert worker.exitcode == 0
        assert finish.is_set() is False  # nobody told it: it saw its parent was not there
    finally:
        worker.kill()
        worker.join()
