"""Where the savings are: which cells to work on first (contract 6.2 to 6.4).

For the process engineer who owns the 100 kWh/t: the cells above the potline's median
voltage ranked by what their excess costs, with their noise beside (a noisy cell above the
median is a different job from a quiet one); the potline's opportunity against the goal;
the anode changes that do not settle, by cell and by crew; the current efficiency of each
cell's tap cycles against the configured one.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import dashboard as model

from .common import (
    POTLINE,
    THIS_MONTH,
    TODAY,
    at,
    board,
    potline_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)

OPPORTUNITY = f'FROM "cell_opportunity" WHERE {POTLINE} AND "period" = \'day\' AND $timeFilter'
POTLINE_DAY = f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'day\' AND $timeFilter'


def transform(kind: str, options: dict[str, object]) -> model.DataTransformerConfig:
    """A Grafana transformation, applied in the browser to the panel's rows."""
    return model.DataTransformerConfig(id_val=kind, options=options)


def ranked_cells() -> table.Panel:
    """Today's cells by rank, their excess and its cost, and their noise merged by cell."""
    excess = (
        'SELECT last("rank") AS "rank", last("voltage_excess_mv") AS "excess_mv", '
        'last("energy_excess_kwh") AS "energy_excess_kwh", '
        f'last("sec_excess_kwh_per_t") AS "kwh_per_t" {OPPORTUNITY} GROUP BY "cell"'
    )
    noise = (
        'SELECT mean("noise_uohm_mean") AS "noise_uohm" FROM "cell_1m" '
        f'WHERE {POTLINE} AND $timeFilter GROUP BY "cell"'
    )
    return (
        table_panel("Cells above the median, today", excess, noise, place=at(w=16, h=10))
        .time_from(TODAY)
        .with_transformation(transform("merge", {}))
        .with_transformation(transform("sortBy", {"sort": [{"field": "rank", "desc": False}]}))
    )


def crews() -> table.Panel:
    """Settling by crew: ``crew`` is a field (contract 6.3), so it is grouped in the browser."""
    changes = (
        'SELECT "crew", "settle_min" FROM "anode_change" '
        f'WHERE {POTLINE} AND "settle_min" >= 0 AND $timeFilter'
    )
    by_crew: dict[str, object] = {
        "fields": {
            "crew": {"operation": "groupby"},
            "settle_min": {"operation": "aggregate", "aggregations": ["mean", "max", "count"]},
        }
    }
    return (
        table_panel("Crews by settling time", changes, unit="m", place=at(x=12, y=18))
        .time_from(THIS_MONTH)
        .with_transformation(transform("groupBy", by_crew))
    )


def savings() -> model.Dashboard:
    settle = (
        'SELECT last("changes") AS "changes", last("settle_min_mean") AS "settle_min_mean", '
        'last("settle_min_max") AS "settle_min_max", last("unsettled") AS "unsettled" '
        f'FROM "anode_settle" WHERE {POTLINE} AND $timeFilter GROUP BY "cell"'
    )
    cycles = f'SELECT 100 * "ce" AS "ce_pct" FROM "tap_cycle" WHERE {POTLINE} AND $timeFilter'
    return board(
        "cellmon-savings",
        "Where the savings are",
        [
            ranked_cells(),
            stat_panel(
                "Opportunity today",
                'SELECT last("opportunity_kwh_per_t") AS "opportunity", '
                f'last("goal_kwh_per_t") AS "goal" {POTLINE_DAY}',
                unit="suffix: kWh/t",
                place=at(x=16, w=8, h=10),
            ).time_from(TODAY),
            timeseries_panel(
                "Opportunity by day against the goal",
                'SELECT "opportunity_kwh_per_t" AS "opportunity", "goal_kwh_per_t" AS "goal" '
                f"{POTLINE_DAY}",
                unit="suffix: kWh/t",
                place=at(y=10, w=24),
            ),
            table_panel(
                "Anode changes that do not settle, this month",
                settle,
                unit="m",
                place=at(y=18),
            ).time_from(THIS_MONTH),
            crews(),
            timeseries_panel(
                "CE per tap cycle against the configured CE",
                f'{cycles} GROUP BY "cell"',
                'SELECT "ce_configured_pct" AS "configured" ' + POTLINE_DAY,
                unit="percent",
                place=at(y=26, w=24),
            ),
        ],
        [potline_variable()],
    )
