"""The processors' views of the config: what each one is built with.

Apart from ``collector.build`` so that the composition root stays a list of parts; each
function imports the processor's module where it runs, for the same reason as there (the
MQTT process loads no processor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.config.models import Config
from processors.rules.expression_syntax import CELL_CONSTANTS

if TYPE_CHECKING:
    from processors.kpi.ae import AESettings
    from processors.kpi.anode_cycle import AnodeSettings
    from processors.kpi.anode_settle import SettleSettings
    from processors.kpi.clock import ClockSettings
    from processors.kpi.periods import Calendar
    from processors.kpi.sec import SecSettings
    from processors.kpi.taps import TapSettings


def calendar(cfg: Config) -> Calendar:
    """Shifts, days and months in the plant's time zone."""
    from processors.kpi.periods import Calendar

    return Calendar(cfg.plant.timezone, cfg.plant.shift_times)


def sec_settings(cfg: Config) -> SecSettings:
    """The kWh/t processor's view of the config."""
    from processors.kpi.energy import Goal
    from processors.kpi.sec import SecSettings

    plant = cfg.plant
    goals = {
        p.id: Goal(
            current_efficiency=p.current_efficiency,
            baseline_kwh_per_t=p.baseline_sec_kwh_per_t,
            savings_goal_kwh_per_t=cfg.targets_for(p.id).sec_savings_kwh_per_t,
            tariff_cny_per_kwh=plant.tariff_cny_per_kwh,
            baseline_voltage_v=p.baseline_voltage_v,
            measured_ce=p.ce_basis == "measured",
            rectifier_efficiency=p.rectifier_efficiency,
        )
        for p in plant.potlines
    }
    return SecSettings(
        calendar=calendar(cfg),
        goals=goals,
        ae_thresholds_v=ae_thresholds(cfg),
        max_gap_s=plant.max_gap_s,
        update_interval_s=plant.kpi_update_s,
        complete_grace_s=plant.complete_grace_s,
    )


def tap_settings(cfg: Config) -> TapSettings:
    """The tap-cycle processor's view of the config."""
    from processors.kpi.taps import TapSettings

    return TapSettings(
        max_cycle_h={p.id: cfg.targets_for(p.id).tap_cycle_max_h for p in cfg.plant.potlines},
        max_gap_s=cfg.plant.max_gap_s,
        calendar=calendar(cfg),
    )


def anode_settings(cfg: Config) -> AnodeSettings:
    """The anode-cycle processor's view of the config."""
    from processors.kpi.anode_cycle import AnodeSettings, AnodeTargets

    targets = {}
    for p in cfg.plant.potlines:
        t = cfg.targets_for(p.id)
        targets[p.id] = AnodeTargets(
            t.anode_cycle_days, t.anode_cycle_tolerance_days, t.anode_block
        )
    plant = cfg.targets
    return AnodeSettings(
        calendar=calendar(cfg),
        targets=targets,
        plant_targets=AnodeTargets(
            plant.anode_cycle_days, plant.anode_cycle_tolerance_days, plant.anode_block
        ),
        complete_grace_s=cfg.plant.complete_grace_s,
    )


def settle_settings(cfg: Config) -> SettleSettings:
    """The anode-settle processor's view: band and longest settling of each configured potline."""
    from processors.kpi.anode_settle import SettleSettings

    targets = {p.id: cfg.targets_for(p.id) for p in cfg.plant.potlines}
    limits = {p: (t.anode_settle_band_mv, t.anode_settle_max_min) for p, t in targets.items()}
    return SettleSettings(calendar(cfg), limits, cfg.plant.complete_grace_s)


def ae_thresholds(cfg: Config) -> dict[str, float]:
    """Each potline's anode-effect threshold, V."""
    return {p.id: cfg.targets_for(p.id).anode_effect_threshold_v for p in cfg.plant.potlines}


def ae_settings(cfg: Config) -> AESettings:
    """The anode-effect processor's view of the config."""
    from processors.kpi.ae import AESettings, Pfc

    potlines = cfg.plant.potlines
    pfc = cfg.pfc
    return AESettings(
        calendar=calendar(cfg),
        thresholds_v=ae_thresholds(cfg),
        current_efficiency={p.id: p.current_efficiency for p in potlines},
        pfc=Pfc(pfc.slope_cf4, pfc.c2f6_ratio, pfc.gwp_cf4, pfc.gwp_c2f6),
        min_duration_s=pfc.min_duration_s,
        max_gap_s=cfg.plant.max_gap_s,
        update_interval_s=cfg.plant.kpi_update_s,
        complete_grace_s=cfg.plant.complete_grace_s,
    )


def rule_constants(cfg: Config) -> dict[str, dict[str, float]]:
    """Each potline's numeric settings, by the names rule expressions use.

    They are every number of a potline's section and of its targets (``CELL_CONSTANTS``,
    held to the models by a test), so a new target key is a rule constant too.
    """
    constants = {}
    for p in cfg.plant.potlines:
        settings = {**dict(p), **dict(cfg.targets_for(p.id))}
        constants[p.id] = {name: float(settings[name]) for name in CELL_CONSTANTS}
    return constants


def clock_settings(cfg: Config) -> ClockSettings:
    """The clock processor's view: each potline's ``clock_drift_limit_s`` (None: off)."""
    from processors.kpi.clock import ClockSettings

    return ClockSettings(
        {p.id: cfg.targets_for(p.id).clock_drift_limit_s for p in cfg.plant.potlines}
    )
