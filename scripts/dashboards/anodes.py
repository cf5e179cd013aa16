"""Anodes: the change cycle, the 590-block share (contract 5.2), the settling after a change.

For the carbon and potroom engineers.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from .common import (
    POTLINE,
    THIS_MONTH,
    at,
    board,
    coloured,
    histogram_panel,
    potline_variable,
    table_panel,
    timeseries_panel,
)

DAY = f'FROM "anode_potline" WHERE {POTLINE} AND "period" = \'day\' AND $timeFilter'


def anodes() -> model.Dashboard:
    overdue = (
        'SELECT last("overdue_days") AS "overdue_days" FROM "anode_overdue" '
        f'WHERE {POTLINE} AND $timeFilter GROUP BY "cell", "anode"'
    )
    settle = (
        'SELECT last("settle_min_mean") AS "mean", last("settle_min_max") AS "max", '
        'last("unsettled") AS "unsettled", last("changes") AS "changes" FROM "anode_settle" '
        f'WHERE {POTLINE} AND $timeFilter GROUP BY "cell"'
    )
    return board(
        "cellmon-anodes",
        "Anodes",
        [
            histogram_panel(
                "Cycle length",
                f'SELECT "cycle_days" FROM "anode_change" WHERE {POTLINE} AND $timeFilter',
                unit="d",
                place=at(),
            ),
            timeseries_panel(
                "On-target share",
                f'SELECT "on_target_pct" {DAY}',
                unit="percent",
                place=at(x=12),
            ),
            timeseries_panel(
                "590-block share",
                f'SELECT "target_block_share_pct" {DAY}',
                unit="percent",
                place=at(y=8),
            ),
            timeseries_panel(
                "Mean cycle", f'SELECT "mean_cycle_days" {DAY}', unit="d", place=at(x=12, y=8)
            ),
            histogram_panel(
                "Minutes to settle after a change",
                f'SELECT "settle_min" FROM "anode_change" WHERE {POTLINE} AND $timeFilter',
                unit="m",
                place=at(y=16),
            ),
            table_panel("Settling by cell, month", settle, place=at(x=12, y=16)).time_from(
                THIS_MONTH
            ),
            coloured(
                table_panel("Anodes overdue", overdue, unit="d", place=at(y=24, w=24)),
                ("green", None),
                ("red", 80),
            ),
        ],
        [potline_variable()],
    )
