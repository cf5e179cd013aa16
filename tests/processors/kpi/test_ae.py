"""Anode effects and PFC emissions, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np
import orjson
import pytest

from processors.kpi.ae import AESettings, AnodeEffectProcessor, Pfc
from processors.kpi.periods import Calendar
from processors.model import Batch, SampleBatch

NS = 1_000_000_000
H = 3600 * NS
DAY0 = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS  # local 2024-03-01 00:00


def processor() -> AnodeEffectProcessor:
    cal = Calendar("Asia/Shanghai", (time(0), time(8), time(16)))
    return AnodeEffectProcessor(
        AESettings(
            calendar=cal,
            thresholds_v={"P1": 8.0},
            current_efficiency={"P1": 0.925},
            pfc=Pfc(slope_cf4=0.143, c2f6_ratio=0.121, gwp_cf4=6630.0, gwp_c2f6=11100.0),
            min_duration_s=0.0,
            max_gap_s=60.0,
            update_interval_s=60.0,
            complete_grace_s=900.0,
        )
    )


def batch(series: list[tuple[int, int, float]], cells: int = 1) -> Batch:
    """series: (cell index, ts, voltage); current 300 kA."""
    a = np.array(series, dtype=np.float64).reshape(-1, 3)
    sb = SampleBatch(
        [("P1", f"C{c}") for c in range(cells)],
        a[:, 0].astype(np.int64),
        np.array([s[1] for s in series], dtype=np.int64),
        a[:, 2],
        np.full(len(series), 300.0),
        [None] * len(series),
    )
    return Batch(sb, [])


def run(*batches: Batch, flush: bool = True):
    proc, state, points = processor(), None, []
    for b in batches:
        state, out = proc.apply(b, state)
        state = orjson.loads(orjson.dumps(proc.checkpoint(state)))
        points += out
    if flush:
        state, out = proc.flush(state)
        points += out
    return points


def voltage_trace(t0: int, t1: int, *effects: tuple[int, int], cell: int = 0):
    """4.2 V every 10 s, 35 V during each [start, end) of ``effects``."""
    return [
        (cell, t, 35.0 if any(a <= t < b for a, b in effects) else 4.2)
        for t in range(t0, t1, 10 * NS)
    ]


def effects(points):
    return [p for p in points if p.measurement == "anode_effect"]


def test_an_anode_effect_of_two_minutes() -> None:
    start = DAY0 + 2 * H
    points = run(batch(voltage_trace(DAY0 + H, DAY0 + 3 * H, (start, start + 120 * NS))))
    (ae,) = effects(points)
    assert ae.time_ns == start
    assert ae.fields == {"duration_s": 120.0, "peak_v": 35.0}


def test_split_over_batches_and_across_midnight_counted_once_in_the_day_it_started() -> None:
    start = DAY0 + 24 * H - 60 * NS  # 23:59:00
    trace = voltage_trace(DAY0 + 23 * H, DAY0 + 25 * H, (start, start + 180 * NS))
    half = len(trace) // 2 + 3  # cut inside the effect: the open effect is in the state
    points = run(batch(trace[:half]), batch(trace[half:]))
    (ae,) = effects(points)
    assert (ae.time_ns, ae.fields["duration_s"]) == (start, 180.0)
    days = {
        p.time_ns: p.fields
        for p in points
        if p.measurement == "ae_potline" and dict(p.tags)["period"] == "day"
    }
    assert days[DAY0]["count"] == 1
    assert days[DAY0 + 24 * H]["count"] == 0


def test_interrupted_by_a_data_gap() -> None:
    start = DAY0 + 2 * H
    before = [
        (0, t, 30.0 if t >= start else 4.2) for t in range(DAY0 + H, start + 60 * NS, 10 * NS)
    ]
    after = [(0, t, 4.2) for t in range(start + 600 * NS, start + 900 * NS, 10 * NS)]
    (ae,) = effects(run(batch(before + after)))
    # last sample above before the 550 s gap: start + 50 s
    assert ae.fields == {"duration_s": 50.0, "peak_v": 30.0, "interrupted": True}


def test_pfc_figures_for_a_day() -> None:
    # 2 cells, 24 h at 300 kA every 10 s; C0 has AEs of 120 s and 180 s, C1 one of 300 s
    t0, t1 = DAY0, DAY0 + 24 * H + 10 * NS
    c0 = voltage_trace(t0, t1, (t0 + H, t0 + H + 120 * NS), (t0 + 5 * H, t0 + 5 * H + 180 * NS))
    c1 = voltage_trace(t0, t1, (t0 + 7 * H, t0 + 7 * H + 300 * NS), cell=1)
    trace = c0 + c1
    points = run(batch(sorted(trace, key=lambda s: s[1]), cells=2))
    day = [
        p.fields
        for p in points
        if p.measurement == "ae_potline" and dict(p.tags)["period"] == "day" and p.time_ns == DAY0
    ][-1]
    minutes = (120 + 180 + 300) / 60  # 10 AE-minutes
    cell_days = 2 * 1.0  # 2 cells × a 24-hour day
    metal_t = 0.33557e-3 * (300 * 24 * 2) * 0.925  # Faraday over both cells' 24 h
    aem = minutes / cell_days  # 5 AE-min per cell-day
    cf4 = 0.143 * aem * metal_t
    c2f6 = 0.121 * cf4
    assert day["count"] == 3
    assert day["minutes"] == pytest.approx(minutes)
    assert day["aef_per_cell_day"] == pytest.approx(1.5)
    assert day["ae_min_per_cell_day"] == pytest.approx(aem)
    assert day["cf4_kg"] == pytest.approx(cf4)
    assert day["c2f6_kg"] == pytest.approx(c2f6)
    assert day["co2e_t"] == pytest.approx((cf4 * 6630 + c2f6 * 11100) / 1000)
