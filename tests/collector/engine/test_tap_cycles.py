"""The registered processors over a journal write ``tap_cycle`` points (contract 6.4), and
the tap processor's charge history is checkpointed in parts that survive a restart."""

import sqlite3
from pathlib import Path

import pytest

from collector import build
from collector.config.inputs import InputRule
from collector.config.models import Config
from collector.config.rules import Rules
from collector.engine.engine import Engine
from collector.journal import store as journal
from collector.journal.outbox import Outbox
from processors.kpi.taps import TapCycleProcessor
from tests.collector.engine.test_checkpoints import Refusing

NS = 1_000_000_000
H = 3600 * NS
T = 1_709_251_200 * NS  # 2024-03-01T00:00Z
STEP = 60 * NS
CONFIG = Config(
    source=Path("cellmon.yaml"),
    plant={"potlines": [{"id": "P1", "baseline_sec_kwh_per_t": 13450}]},
    rules=Rules(
        inputs=[InputRule(name="t", topic="smelter/{potline}/{cell}/telemetry", kind="telemetry")]
    ),
)
ENGINE = {"instance": "test", "metrics_interval_s": 3600.0, "dedup_window_s": 3600.0}


def append(inbox: journal.Inbox, t0: int, t1: int) -> None:
    samples = [
        ("P1", c, t, 4.2, 300.0, None, None) for t in range(t0, t1, STEP) for c in ("C1", "C2")
    ]
    inbox.append(samples, [], {})


def tap(inbox: journal.Inbox, t: int, metal_kg: float) -> None:
    inbox.append([], [("P1", "C1", t, "metal_tap", {"metal_kg": metal_kg})], {})


def drain(engine: Engine) -> None:
    while engine.step():
        pass


def tap_cycles(state: Path) -> list[dict[str, float]]:
    body = Outbox(journal.connect_journal(state)).take(10**9).body.decode()
    found = []
    for line in body.splitlines():
        if line.startswith("tap_cycle,"):
            _, fields, _ = line.split(" ")
            found.append({k: float(v) for k, v in (f.split("=") for f in fields.split(","))})
    return found


def test_taps_logged_after_their_samples_give_a_cycle_across_a_restart(tmp_path: Path) -> None:
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    store = journal.Store(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    every = {**ENGINE, "state_every_s": 0.0, "batch_rows": 500}
    engine = Engine(store, build.processors(CONFIG), **every)
    append(inbox, T, T + 2 * H)
    tap(inbox, T + H, 1000.0)  # an hour after its instant
    append(inbox, T + 2 * H, T + 20 * H)
    drain(engine)
    del engine  # killed: the next one starts from the checkpoint, its history in parts
    engine = Engine(store, build.processors(CONFIG), **every)
    append(inbox, T + 20 * H, T + 34 * H)
    tap(inbox, T + 33 * H, 3180.0)  # 32 h after the first, logged an hour late
    drain(engine)
    engine.finish()
    (cycle,) = tap_cycles(tmp_path)
    # 300 kA for 32 h: 9,600 kA·h; CE 3180 / (0.33557 × 9600)
    assert cycle["charge_kah"] == pytest.approx(9600.0, rel=1e-9)
    assert cycle["hours"] == pytest.approx(32.0)
    assert cycle["ce"] == pytest.approx(3180.0 / (0.33557 * 9600.0), rel=1e-9)
    proc = TapCycleProcessor(build.tap_settings(CONFIG))
    stored = store.load_state(proc.name)
    assert stored == proc.checkpoint(engine._states[proc.name])  # the parts add up
    tapped = [k for k in stored["parts"] if k.startswith("P1/C1/")]
    assert len(tapped) == 6  # C1: back to its newest tap, an hour ago, in 10-minute parts
    assert len(stored["parts"]) - len(tapped) == 34 * 6  # C2, never tapped: all 34 hours


def test_a_refused_commit_loses_no_part_of_the_history(tmp_path: Path) -> None:
    """The marks of what changed go with a refused commit; the journal's state comes back."""
    inbox = journal.Inbox(journal.connect_inbox(tmp_path))
    store = Refusing(journal.connect_inbox(tmp_path), journal.connect_journal(tmp_path))
    proc = TapCycleProcessor(build.tap_settings(CONFIG))
    engine = Engine(store, [proc], **{**ENGINE, "state_every_s": 0.0})
    append(inbox, T, T + H)
    engine.step()
    append(inbox, T + H, T + 2 * H)
    with pytest.raises(sqlite3.OperationalError):
        engine.step()  # its changed parts are not stored
    append(inbox, T + 2 * H, T + 3 * H)
    drain(engine)
    engine.finish()
    stored = store.load_state(proc.name)
    assert stored == proc.checkpoint(engine._states[proc.name])
    assert len(stored["parts"]) == 2 * 3 * 6  # two cells, three hours
