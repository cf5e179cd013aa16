"""A recalculation rewrites the tap cycles that end in its periods, with the samples of the
cycle before the periods read for the tapped cells only (contract 6.4, 5.2).

The history is a stand-in that serves samples and events from lists and records what was
asked of it: a day of 1 Hz samples of a potline is what the real one reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import time
from typing import Any

import numpy as np
import pytest

from collector.engine.recalc import Reach, Recalculation
from collector.engine.targets import Span, Target
from processors.kpi.periods import Calendar
from processors.kpi.taps import TapCycleProcessor, TapSettings
from processors.model import Batch, Event, Point, SampleBatch
from processors.testing import at_rate, metal_tap, samples

NS = 1_000_000_000
H = 3600 * NS
CAL = Calendar("UTC", (time(0), time(8), time(16)))
D10 = 1_773_100_800 * NS  # 2026-03-10T00:00Z
STEP_S = 30
SETTINGS = TapSettings(max_cycle_h={"P1": 72.0}, max_gap_s=60.0, calendar=CAL)
CELLS = [("P1", "C1"), ("P1", "C2")]
P, T = D10 - 20 * H, D10 + 12 * H  # the cycle starts the day before and ends in the day
DAY = Target("P1", {Span("day", D10, D10 + 24 * H)})


class History:
    """Samples every 30 s of two cells at 300 kA from P − 2 h on, and C1's two taps."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int, tuple[str, ...] | None]] = []
        self.events_ = [metal_tap(CELLS[0], P, 1000.0), metal_tap(CELLS[0], T, 3180.0)]

    def samples(
        self, potline: str, t0: int, t1: int, *, cells: Sequence[str] | None = None
    ) -> SampleBatch:
        self.asked.append((t0, t1, None if cells is None else tuple(cells)))
        some = [c for c in CELLS if cells is None or c[1] in cells]
        return samples(some, at_rate(max(t0, P - 2 * H), t1, STEP_S))

    def events(self, potline: str, t0: int, t1: int, of_type: str | None = None) -> list[Event]:
        return [e for e in self.events_ if t0 <= e.ts_ns < t1]

    def batches(self, potline: str, t0: int, t1: int, step: int) -> Iterator[Batch]:
        for a in range(t0, t1, step):
            b = min(a + step, t1)
            yield Batch(self.samples(potline, a, b), self.events(potline, a, b))

    def each(self, windows: Sequence[tuple[tuple[str, str], int, int]]) -> Iterator[SampleBatch]:
        return (self.samples(p, a, b, cells=[cell]) for (p, cell), a, b in windows)

    def stored(self, *args: Any, **kwargs: Any) -> list[Point]:
        return []

    def days(self, *args: Any) -> list[Point]:
        return []


def recalculation(history: History) -> Recalculation:
    reach = Reach(context_ns=60 * NS, events_before_ns=72 * H, step_ns=H)
    procs = lambda: [TapCycleProcessor(SETTINGS)]  # noqa: E731
    return Recalculation(procs, history, reach, now_ns=D10 + 48 * H)  # type: ignore[arg-type]


def test_a_cycle_that_began_before_the_periods_is_rewritten_whole() -> None:
    history = History()
    outcome = recalculation(history).run(DAY, {})
    (point,) = [p for p in outcome.points if p.measurement == "tap_cycle"]
    assert point.time_ns == T
    assert point.fields["charge_kah"] == pytest.approx(300.0 * 32, rel=1e-9)
    assert point.fields["hours_covered"] == pytest.approx(32.0, rel=1e-9)
    assert point.fields["ce"] == pytest.approx(3180.0 / (0.33557 * 300.0 * 32), rel=1e-9)
    t0 = D10 - 60 * NS
    before = [(a, b, cell) for a, b, cell in history.asked if b <= t0]
    assert before == [(P - 60 * NS, t0, ("C1",))]  # the tapped cell only, from its previous tap


def test_the_live_state_goes_on_from_the_recalculated_minutes() -> None:
    """Live, the day had a 4 h gap; the backfill filled it; the next tap counts it.

    The live run is past the day, as it is past anything the database holds.
    """
    proc = TapCycleProcessor(SETTINGS)
    gap = (D10 + 14 * H, D10 + 18 * H)
    live: Any = None
    for a in range(D10 + 13 * H, D10 + 25 * H, H):
        sent = lambda c, t: not gap[0] < t < gap[1]  # noqa: E731
        live, _ = proc.apply(Batch(samples(CELLS, at_rate(a, a + H, STEP_S), sent=sent), []), live)
    tap = metal_tap(CELLS[0], D10 + 13 * H, 100.0)
    live, _ = proc.apply(Batch(samples(CELLS, []), [tap]), live)
    before = proc.checkpoint(live)
    outcome = recalculation(History()).run(DAY, {proc.name: before})
    live = outcome.states[proc.name]
    nxt = D10 + 25 * H
    last = Batch(samples(CELLS, at_rate(nxt, nxt + H, STEP_S)), [metal_tap(CELLS[0], nxt, 1.0)])
    _, (unfilled,) = TapCycleProcessor(SETTINGS).apply(last, before)
    assert unfilled.fields["hours_covered"] == pytest.approx(8.0, abs=0.01)  # without it
    _, (point,) = proc.apply(last, live)
    assert point.fields["hours"] == pytest.approx(12.0)
    assert point.fields["hours_covered"] == pytest.approx(12.0, rel=1e-9)
    assert point.fields["charge_kah"] == pytest.approx(300.0 * 12, rel=1e-9)
    assert np.isclose(point.fields["ce"], 1.0 / (0.33557 * 300.0 * 12))
