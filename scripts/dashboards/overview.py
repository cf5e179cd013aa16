"""Potline overview: the shift's operators' board, the plant's targets today and this month.

kWh/t coloured by the points' own target and baseline, the goal, what was saved, anode changes
and effects, every cell's voltage and kWh/t, and the alarms standing.
"""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as model

from .alarms import alarms_standing, last_transitions, only_raised, state_colours
from .common import (
    POTLINE,
    THIS_MONTH,
    TODAY,
    InfluxPanel,
    at,
    board,
    by_thresholds,
    coloured,
    gauge_panel,
    potline_variable,
    query,
    red_from,
    stat_panel,
    table_panel,
)

DAY = f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'day\' AND $timeFilter'
MONTH = f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'month\' AND $timeFilter'
SEC_STEPS = {"good": "green", "target": "orange", "baseline": "red"}
"""kWh/t: green below the points' target, amber from it to their baseline, red from that."""


class Transformable(InfluxPanel, Protocol):
    """A panel whose rows can be transformed: the stat and the table, here."""

    def with_transformation(self, transformation: model.DataTransformerConfig, /) -> Self:
        """One more transformation, applied after those added before."""


Q = TypeVar("Q", bound=Transformable)


def sec_coloured(panel: Q, source: str) -> Q:
    """Colour a panel's kWh/t by the target and baseline of the points (``source``: FROM … WHERE).

    Grafana's "Config from query results" makes the config query's fields threshold steps in
    their order, and the first step's value −∞, so ``good`` only names the colour below.
    """
    config = (
        'SELECT last("target_kwh_per_t") AS "good", last("target_kwh_per_t") AS "target", '
        f'last("baseline_kwh_per_t") AS "baseline" {source}'
    )
    mappings = [
        {
            "fieldName": name,
            "handlerKey": "threshold1",
            "handlerArguments": {"threshold": {"color": colour}},
        }
        for name, colour in SEC_STEPS.items()
    ]
    steps = model.DataTransformerConfig(
        id_val="configFromData", options={"configRefId": "config", "mappings": mappings}
    )
    return (
        panel.with_target(query("config", config, table=True))
        .color_scheme(by_thresholds())
        .with_transformation(steps)
    )


def energy_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """The top row: kWh/t today and this month, the goal, and what was saved."""
    saved = f'SELECT last("energy_saved_kwh") AS "kWh", last("cost_saved_cny") AS "CNY" {MONTH}'
    return [
        sec_coloured(
            stat_panel(
                "kWh/t today", f'SELECT last("sec_kwh_per_t") {DAY}', place=at(w=6, h=5)
            ).time_from(TODAY),
            DAY,
        ),
        sec_coloured(
            stat_panel(
                "kWh/t this month",
                f'SELECT last("sec_kwh_per_t") {MONTH}',
                place=at(x=6, w=6, h=5),
            ).time_from(THIS_MONTH),
            MONTH,
        ),
        coloured(
            gauge_panel(
                "Goal reached this month",
                f'SELECT last("goal_pct") {MONTH}',
                unit="percent",
                place=at(x=12, w=6, h=5),
            ).time_from(THIS_MONTH),
            ("red", None),
            ("green", 100),
        ),
        stat_panel("Saved this month", saved, place=at(x=18, w=6, h=5)).time_from(THIS_MONTH),
    ]


def cell_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """Anode changes and effects today, and every cell's voltage now and kWh/t today."""
    changes = (
        f'SELECT last("changes") FROM "anode_potline" WHERE {POTLINE} '
        "AND \"period\" = 'day' AND $timeFilter"
    )
    effects = (
        f'SELECT last("count") FROM "ae_potline" WHERE {POTLINE} '
        "AND \"period\" = 'day' AND $timeFilter"
    )
    voltage = (
        f'SELECT last("voltage_v") AS "voltage_v" FROM "cell" WHERE {POTLINE} '
        'AND $timeFilter GROUP BY "cell"'
    )
    sec_per_cell = (
        f'SELECT last("sec_kwh_per_t") AS "sec_kwh_per_t" FROM "sec_cell" WHERE '
        f'{POTLINE} AND "period" = \'day\' AND $timeFilter GROUP BY "cell"'
    )
    return [
        stat_panel("Anode changes today", changes, place=at(y=5, w=6, h=5)).time_from(TODAY),
        coloured(
            stat_panel("Anode effects today", effects, place=at(x=6, y=5, w=6, h=5)),
            *red_from(1),
        ).time_from(TODAY),
        coloured(
            table_panel("Cell voltage now", voltage, unit="volt", place=at(x=12, y=5)),
            ("blue", None),
            ("green", 3.8),
            ("red", 4.5),
        ),
        sec_coloured(
            table_panel("kWh/t per cell today", sec_per_cell, place=at(y=13, w=24)).time_from(
                TODAY
            ),
            DAY,
        ),
    ]


def alarm_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """The alarms standing now, how many, and every transition of the range."""
    transitions = (
        f'SELECT "state", "value" FROM "alarm" WHERE {POTLINE} AND $timeFilter '
        'GROUP BY "cell", "rule", "severity"'
    )
    return [
        state_colours(
            table_panel("Cells in alarm", last_transitions(POTLINE), place=at(y=21))
        ).with_transformation(only_raised()),
        state_colours(table_panel("Alarm transitions", transitions, place=at(x=12, y=21))),
        coloured(
            stat_panel("Alarms standing", alarms_standing(POTLINE), place=at(y=10, h=3)),
            *red_from(1),
        ).no_value("0"),  # no rows when none stands: InfluxQL counts no series
    ]


def overview() -> model.Dashboard:
    return board(
        "cellmon-overview",
        "Potline overview",
        [*energy_panels(), *cell_panels(), *alarm_panels()],
        [potline_variable()],
    )
