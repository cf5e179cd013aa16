"""The worker process on its own: told by its pipe, and finishing when its pipe closes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from collector.config.loader import load_config
from collector.config.models import Config
from collector.runtime.child import WorkerProcess
from tests.harness import wait_for

CONFIG = """\
sink: {{type: file, path: {dir}/points.lp}}
state_dir: {dir}/state
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
"""
RULES = "inputs:\n  - {name: t, topic: 'smelter/{potline}/{cell}/telemetry', kind: telemetry}\n"


def configured(tmp_path: Path) -> Config:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(RULES)
    (tmp_path / "cellmon.yaml").write_text(CONFIG.format(dir=tmp_path))
    return load_config(tmp_path / "cellmon.yaml")


def test_a_worker_whose_mqtt_process_is_gone_finishes_by_itself(tmp_path: Path) -> None:
    # its pipe closed without a FINISH: the MQTT process was killed
    worker = WorkerProcess("collector.runtime.worker", configured(tmp_path), "WARNING")
    worker.start()
    try:
        assert worker._proc is not None
        assert worker._proc.stdin is not None
        worker._proc.stdin.close()
        wait_for(lambda: not worker.is_alive(), 60)
        assert worker.join() == 0
    finally:
        if worker._proc is not None:
            worker._proc.kill()


def test_a_worker_started_by_a_process_that_died_before_sending_the_config_exits(
    tmp_path: Path,
) -> None:
    # killed while starting its worker: nothing to finish, nothing to hold
    proc = subprocess.run(
        [sys.executable, "-m", "collector.runtime.worker"],
        input=b"",
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_a_worker_told_to_finish_ignores_sigterm_sent_to_its_group(tmp_path: Path) -> None:
    worker = WorkerProcess("collector.runtime.worker", configured(tmp_path), "WARNING")
    worker.start()
    try:
        assert worker._proc is not None
        wait_for(lambda: (tmp_path / "state" / "worker.lock").exists(), 60)
        os.kill(worker._proc.pid, signal.SIGTERM)
        os.kill(worker._proc.pid, signal.SIGHUP)
        assert worker.is_alive()
        worker.finish()
        assert worker.join() == 0
    finally:
        if worker._proc is not None:
            worker._proc.kill()
