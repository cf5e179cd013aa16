"""Lean processes: each process of ``cellmon run`` imports only what it uses.

The MQTT process decodes and commits; pandas, pyarrow, influxdb-client or rich there would
cost memory on every instance and shard for nothing. Checked in a fresh interpreter, as
the process starts (spawn), not in this test process where everything is loaded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import ROOT

HEAVY = {"pandas", "pyarrow", "influxdb_client", "rich", "tqdm"}


def imported_by(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["collector.runtime.service", "collector.runtime.shards"])
def test_the_mqtt_process_imports_no_heavy_library(module: str) -> None:
    assert imported_by(module) & HEAVY == set()


def test_the_worker_imports_no_dataframe_or_terminal_library() -> None:
    # influxdb-client is loaded when the v2 sink is built, not on import
    assert imported_by("collector.runtime.worker") & HEAVY == set()
