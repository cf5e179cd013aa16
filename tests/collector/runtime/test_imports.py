"""Lean processes: each process of ``cellmon run`` imports only what it uses.

The MQTT process decodes and commits; numpy (15 MiB resident), the processors, pandas,
pyarrow, influxdb-client or rich there would cost memory on every instance and shard for
nothing. Checked in a fresh interpreter, as
the process starts (spawn), not in this test process where everything is loaded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import ROOT

HEAVY = {"pandas", "pyarrow", "influxdb_client", "rich", "tqdm"}


def modules_of(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return set(out.stdout.split())


def imported_by(module: str) -> set[str]:
    return {m.split(".")[0] for m in modules_of(module)}


@pytest.mark.parametrize("module", ["collector.runtime.service", "collector.runtime.shards"])
def test_the_mqtt_process_imports_no_heavy_library(module: str) -> None:
    assert imported_by(module) & (HEAVY | {"numpy"}) == set()


@pytest.mark.parametrize("module", ["collector.runtime.service", "collector.runtime.shards"])
def test_the_mqtt_process_imports_no_processor_stage(module: str) -> None:
    # built by the worker: collector.build imports them where it builds them
    loaded = modules_of(module)
    assert not any(m.startswith(("processors.kpi", "collector.engine")) for m in loaded)


def test_the_worker_imports_no_dataframe_or_terminal_library() -> None:
    # influxdb-client is loaded when the v2 sink is built, not on import
    assert imported_by("collector.runtime.worker") & HEAVY == set()


def test_the_worker_imports_no_mqtt_client_or_protobuf() -> None:
    # the source's: built by the MQTT process (paho also by alerts, when they have a topic)
    assert imported_by("collector.runtime.worker") & {"paho", "mqtt5", "google"} == set()
