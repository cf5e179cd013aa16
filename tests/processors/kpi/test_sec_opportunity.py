"""The kWh/t processor ranks each day's and month's cells against their median (contract 6.2).

Every expected value is arithmetic written out here from the samples' voltages and currents.
"""

from __future__ import annotations

import pytest

from tests.processors.kpi.test_sec import (
    CE,
    DAY0,
    FARADAY,
    H,
    batch,
    constant,
    final,
    processor,
    run,
)

CELLS = ["C1", "C2", "C3", "C4", "C5"]
VOLTS = [4.10, 4.15, 4.20, 4.30, 4.25]


def day_of_samples(hours: float, late_start_h: dict[int, float] | None = None) -> list:
    """Five cells at 300 kA, one sample a minute from local midnight for ``hours``."""
    series = []
    for c, v in enumerate(VOLTS):
        start = DAY0 + int((late_start_h or {}).get(c, 0.0) * H)
        series += constant(c, start, DAY0 + int(hours * H), 60, v, 300.0)
    return sorted(series, key=lambda s: (s[1], s[0]))


def test_a_whole_day_ranks_the_cells_and_prices_the_opportunity() -> None:
    # to 00:01 of the next day, so the day completes
    _, points = run(processor(), batch(CELLS, day_of_samples(24 + 1 / 60)))
    # the median of 4.10 … 4.30 is 4.20 V; each cell's charge 300 kA × 24 h = 7,200 kA·h
    per_v = 1 / (FARADAY * CE)
    expected = {"C4": (100.0, 720.0, 1), "C5": (50.0, 360.0, 2), "C3": (0.0, 0.0, 3)}
    expected |= {"C2": (-50.0, 0.0, 4), "C1": (-100.0, 0.0, 5)}
    for cell, (mv, kwh, rank) in expected.items():
        f = final(points, "cell_opportunity", "day", DAY0, cell)
        assert f["median_voltage_v"] == pytest.approx(4.20, abs=1e-9)
        assert f["voltage_excess_mv"] == pytest.approx(mv, abs=1e-6)
        assert f["energy_excess_kwh"] == pytest.approx(kwh, abs=1e-6)
        assert f["sec_excess_kwh_per_t"] == pytest.approx(mv / 1000 * per_v, abs=1e-6)
        assert f["rank"] == rank
        assert f["complete"] is True
    # the potline made 0.33557e-3 × 5 × 7,200 × 0.925 t; the two cells above cost 1,080 kWh
    metal = FARADAY * 5 * 7200 * CE
    potline = final(points, "sec_potline", "day", DAY0)
    assert potline["opportunity_kwh_per_t"] == pytest.approx(1080 / metal, abs=1e-6)


def test_an_open_day_ranks_the_cells_that_covered_half_of_it_so_far() -> None:
    # at noon: C1 started at 09:00, 3 h of the 12 so far; the other four are ranked
    _, points = run(processor(), batch(CELLS, day_of_samples(12, {0: 9.0})))
    ranked = {dict(p.tags)["cell"] for p in points if p.measurement == "cell_opportunity"}
    assert ranked == {"C2", "C3", "C4", "C5"}
    # the median of 4.15, 4.20, 4.25, 4.30 is (4.20 + 4.25) / 2
    f = final(points, "cell_opportunity", "day", DAY0, "C4")
    assert f["median_voltage_v"] == pytest.approx(4.225, abs=1e-9)
    assert f["energy_excess_kwh"] == pytest.approx(0.075 * 300 * 12, abs=1e-6)
    assert f["complete"] is False
    # the month so far is the same half day: the same cells, the same median
    month = final(points, "cell_opportunity", "month", DAY0, "C4")
    assert month["median_voltage_v"] == pytest.approx(4.225, abs=1e-9)


def test_no_shift_is_ranked() -> None:
    _, points = run(processor(), batch(CELLS, day_of_samples(9)))
    periods = {dict(p.tags)["period"] for p in points if p.measurement == "cell_opportunity"}
    assert periods == {"day", "month"}
