"""The registries of ``collector.build``: which processors each stage gets."""

from __future__ import annotations

from pathlib import Path

from collector import build
from collector.config.loader import load_config
from collector.sinks.options import SINK_OPTIONS

SHIPPED = load_config(Path(__file__).resolve().parents[2] / "config" / "cellmon.yaml")


def test_every_kpi_processor_is_redone_by_a_recalculation_and_left_out_of_a_replay() -> None:
    # a KPI processor that is not Recomputable would be run by replay over the file alone
    kpis = {"sec", "anodes", "anode_settle", "anode_effects", "minutes", "tap_cycles"}
    assert {p.name for p in build.recomputable_processors(SHIPPED)} == kpis
    raw = {p.name for p in build.raw_processors(SHIPPED)}
    assert raw == {p.name for p in build.processors(SHIPPED)} - kpis
    assert "events" in raw


def test_every_sink_type_the_config_accepts_can_be_built() -> None:
    # the sections and the builders are two registries: a type in one only would pass
    # `cellmon check` and then fail at the start of `cellmon run`
    assert build.SINKS.keys() == SINK_OPTIONS.keys()
