"""The batches and processors of the old-state fixture (data/states_before_ledger.json),
written by the release before the period ledger on ``first_batch``; only names that both
releases have are used here."""

from datetime import UTC, datetime, time

import numpy as np

from processors.kpi.ae import AESettings, AnodeEffectProcessor, Pfc
from processors.kpi.anode_cycle import AnodeCycleProcessor, AnodeSettings, AnodeTargets
from processors.kpi.energy import Goal
from processors.kpi.periods import Calendar
from processors.kpi.sec import SecProcessor, SecSettings
from processors.model import Batch, Event, SampleBatch

NS = 1_000_000_000
SHIFT_CHANGE = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp()) * NS
CALENDAR = Calendar("Asia/Shanghai", (time(0), time(8), time(16)))
CELLS = [("P1", "C1"), ("P1", "C2")]
TIMING = {"max_gap_s": 60.0, "update_interval_s": 60.0, "complete_grace_s": 900.0}
TARGETS = AnodeTargets(31.0, 1.0, "590")


def factories() -> dict:
    return {
        "sec": lambda: SecProcessor(
            SecSettings(
                calendar=CALENDAR,
                goals={"P1": Goal(0.925, 13450.0, 100.0, 0.38)},
                ae_thresholds_v={"P1": 8.0},
                **TIMING,
            )
        ),
        "anodes": lambda: AnodeCycleProcessor(
            AnodeSettings(
                calendar=CALENDAR,
                targets={"P1": TARGETS},
                plant_targets=TARGETS,
                complete_grace_s=900.0,
            )
        ),
        "anode_effects": lambda: AnodeEffectProcessor(
            AESettings(
                calendar=CALENDAR,
                thresholds_v={"P1": 8.0},
                current_efficiency={"P1": 0.925},
                pfc=Pfc(0.143, 0.121, 6630.0, 11100.0),
                min_duration_s=0.0,
                **TIMING,
            )
        ),
    }


def _batch(t0: int, t1: int, events: list[Event]) -> Batch:
    times = list(range(t0, t1, 10 * NS))
    n = len(times)
    effect = [
        35.0 if SHIFT_CHANGE - 300 * NS <= t < SHIFT_CHANGE + 120 * NS else 4.2 for t in times
    ]
    return Batch(
        SampleBatch(
            list(CELLS),
            np.array([0, 1] * n, dtype=np.int64),
            np.repeat(np.array(times, dtype=np.int64), 2),
            np.array([v for v in effect for _ in range(2)]) + np.tile([0.0, 0.03], n),
            np.full(2 * n, 300.0),
            [None] * (2 * n),
        ),
        events,
    )


def first_batch() -> Batch:
    events = [
        Event("P1", "C1", SHIFT_CHANGE - 900 * NS, "anode_change", {"anode": 3, "block": "590"}),
        Event("P1", "C2", SHIFT_CHANGE - 60 * NS, "metal_tap", {"metal_kg": 1200.0}),
        Event(
            "P1",
            "C2",
            SHIFT_CHANGE - 30 * NS,
            "anode_change",
            {"anode": 4, "block": "560", "butt_mm": 150.0},
        ),
    ]
    return _batch(SHIFT_CHANGE - 1800 * NS, SHIFT_CHANGE + 60 * NS, events)


def second_batch() -> Batch:
    return _batch(SHIFT_CHANGE + 60 * NS, SHIFT_CHANGE + 1800 * NS, [])
