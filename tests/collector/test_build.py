"""The registries of ``collector.build``: which processors each stage gets."""

from __future__ import annotations

from pathlib import Path

from collector import build
from collector.config.loader import load_config

SHIPPED = load_config(Path(__file__).resolve().parents[2] / "config" / "cellmon.yaml")


def test_every_kpi_processor_is_redone_by_a_recalculation_and_left_out_of_a_replay() -> None:
    # a KPI processor that is not Recomputable would be run by replay over the file alone
    kpis = {"sec", "anodes", "anode_effects", "minutes"}
    assert {p.name for p in build.recomputable_processors(SHIPPED)} == kpis
    raw = {p.name for p in build.raw_processors(SHIPPED)}
    assert raw == {p.name for p in build.processors(SHIPPED)} - kpis
    assert "events" in raw
