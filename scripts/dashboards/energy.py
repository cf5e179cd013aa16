"""Energy savings: kWh/t against the goal, and why it moved (contract 5.3), for management.

Per day over the board's range, per month over the last twelve months and this one.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from .common import MONTHS, POTLINE, Ready, at, board, potline_variable, timeseries_panel

AGAINST = 'SELECT "sec_kwh_per_t", "target_kwh_per_t", "baseline_kwh_per_t" '
KWH_PER_T = "suffix: kWh/t"


def sec(period: str) -> str:
    return f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'{period}\' AND $timeFilter'


def setting(key: str, value: object) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val=key, value=value)


def savings_split(title: str, source: str, place: model.GridPos) -> timeseries.Panel:
    """The savings as stacked bars of their voltage and current-efficiency parts.

    The goal (query B) is a line over the bars, not stacked on them.
    """
    return (
        timeseries_panel(
            title,
            'SELECT "savings_voltage_kwh_per_t" AS "voltage", '
            f'"savings_ce_kwh_per_t" AS "current efficiency" {source}',
            f'SELECT "goal_kwh_per_t" AS "goal" {source}',
            unit=KWH_PER_T,
            place=place,
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(Ready(common.StackingConfig(mode=common.StackingMode.NORMAL)))
        .override_by_query(
            "B",
            [
                setting("custom.drawStyle", common.GraphDrawStyle.LINE),
                setting("custom.stacking", common.StackingConfig(mode=common.StackingMode.NONE)),
                setting(
                    "color",
                    model.FieldColor(mode=model.FieldColorModeId.FIXED, fixed_color="green"),
                ),
            ],
        )
    )


def anode_effects_cost(source: str, place: model.GridPos) -> timeseries.Panel:
    """The energy and environment targets together.

    What the anode effects cost in mV and kWh/t, beside their PFC emissions in CO2e (on an
    axis of their own).
    """
    return (
        timeseries_panel(
            "Anode effects: energy and emissions",
            f'SELECT "ae_voltage_mv" AS "mV" {source}',
            f'SELECT "ae_kwh_per_t" AS "kWh/t" {source}',
            f'SELECT "co2e_t" AS "CO2e" FROM "ae_potline" WHERE {POTLINE} '
            "AND \"period\" = 'day' AND $timeFilter",
            place=place,
        )
        .override_by_query("A", [setting("unit", "mvolt")])
        .override_by_query("B", [setting("unit", KWH_PER_T)])
        .override_by_query(
            "C",
            [setting("unit", "masst"), setting("custom.axisPlacement", common.AxisPlacement.RIGHT)],
        )
    )


def savings_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """kWh/t against the goal, the savings' parts, and what anode effects cost."""
    monthly_ce = (
        'SELECT "ce_measured_pct" AS "measured", "ce_configured_pct" AS "configured" '
        + sec("month")
    )
    return [
        timeseries_panel("Daily kWh/t against the goal", AGAINST + sec("day"), place=at()),
        timeseries_panel(
            "Monthly kWh/t against the goal", AGAINST + sec("month"), place=at(x=12)
        ).time_from(MONTHS),
        savings_split("Savings per day: voltage and current efficiency", sec("day"), at(y=8)),
        savings_split(
            "Savings per month: voltage and current efficiency", sec("month"), at(x=12, y=8)
        ).time_from(MONTHS),
        anode_effects_cost(sec("day"), at(y=16)),
        timeseries_panel(
            "Current efficiency, measured and configured",
            monthly_ce,
            unit="percent",
            place=at(x=12, y=16),
        )
        .draw_style(common.GraphDrawStyle.POINTS)
        .point_size(10)
        .time_from(MONTHS),
    ]


def outcome_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """Mean voltage, the goal reached, and the energy and money saved so far."""
    return [
        timeseries_panel(
            "Mean cell voltage (current-weighted)",
            f'SELECT "voltage_avg_v" AS "voltage" {sec("day")}',
            unit="volt",
            place=at(y=24),
        ),
        timeseries_panel(
            "Goal reached",
            f'SELECT "goal_pct" {sec("month")}',
            unit="percent",
            place=at(x=12, y=24),
        ).time_from(MONTHS),
        timeseries_panel(
            "Energy saved, cumulative",
            f'SELECT cumulative_sum("energy_saved_kwh") {sec("day")}',
            unit="kwatth",
            place=at(y=32),
        ),
        timeseries_panel(
            "Money saved, cumulative",
            f'SELECT cumulative_sum("cost_saved_cny") {sec("day")}',
            unit="currencyCNY",
            place=at(x=12, y=32),
        ),
    ]


def energy() -> model.Dashboard:
    return board(
        "cellmon-energy",
        "Energy savings",
        [*savings_panels(), *outcome_panels()],
        [potline_variable()],
    )
