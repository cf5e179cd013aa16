"""Cell detail: a cell in trouble over the board's days.

From its minute aggregates (contract 5.4); the bath temperature, which those do not carry,
from the raw samples.
"""

from __future__ import annotations

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as model

from .alarms import state_colours
from .common import (
    CELL,
    annotation,
    at,
    board,
    cell_variable,
    coloured,
    potline_variable,
    red_from,
    table_panel,
    timeseries_panel,
)


def series(measurement: str) -> str:
    """The cell's points of ``measurement``, one per interval of the graph's width."""
    return (
        f'FROM "{measurement}" WHERE {CELL} AND $timeFilter GROUP BY time($__interval) fill(none)'
    )


def signal_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """Voltage, current, noise and bath temperature: what the cell controller measures."""
    voltage = (
        'SELECT mean("voltage_v_mean") AS "mean", min("voltage_v_min") AS "min", '
        f'max("voltage_v_max") AS "max" {series("cell_1m")}'
    )
    current = f'SELECT mean("current_ka_mean") AS "current" {series("cell_1m")}'
    noise = f'SELECT mean("noise_uohm_mean") AS "noise" {series("cell_1m")}'
    return [
        coloured(
            timeseries_panel("Cell voltage", voltage, unit="volt", place=at()), *red_from(4.5)
        ),
        timeseries_panel("Line current", current, unit="kA", place=at(x=12)),
        coloured(
            timeseries_panel("Resistance noise", noise, unit="µΩ", place=at(y=8)), *red_from(25)
        ),
        timeseries_panel(
            "Bath temperature",
            f'SELECT mean("bath_temp_c") {series("cell")}',
            unit="celsius",
            place=at(x=12, y=8),
        ),
    ]


def event_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """kWh/t by shift and day beside its target and baseline, anode work and alarms."""
    sec = f'FROM "sec_cell" WHERE {CELL} AND "period" = \'{{}}\' AND $timeFilter'
    changes = (
        'SELECT "cycle_days", "deviation_days", "on_target", "settle_min", "peak_excess_mv", '
        '"settled", "crew" FROM "anode_change" '
        f'WHERE {CELL} AND $timeFilter GROUP BY "anode", "block"'
    )
    effects = f'SELECT "duration_s", "peak_v" FROM "anode_effect" WHERE {CELL} AND $timeFilter'
    alarms = (
        f'SELECT "state", "value" FROM "alarm" WHERE {CELL} AND $timeFilter '
        'GROUP BY "rule", "severity"'
    )
    return [
        timeseries_panel(
            "kWh/t by shift and day",
            f'SELECT "sec_kwh_per_t" AS "shift" {sec.format("shift")}',
            f'SELECT "sec_kwh_per_t" AS "day" {sec.format("day")}',
            'SELECT "target_kwh_per_t" AS "target", "baseline_kwh_per_t" AS "baseline" '
            + sec.format("day"),
            place=at(y=16),
        ),
        table_panel("Anode changes", changes, place=at(x=12, y=16)),
        table_panel("Anode effects", effects, place=at(y=24)),
        state_colours(table_panel("Alarms", alarms, place=at(x=12, y=24))),
    ]


def cell_detail() -> model.Dashboard:
    where = f"WHERE {CELL} AND $timeFilter"
    raised = f"WHERE {CELL} AND \"state\" = 'raised' AND $timeFilter"
    return board(
        "cellmon-cell",
        "Cell detail",
        [*signal_panels(), *event_panels()],
        [potline_variable(), cell_variable()],
        [
            annotation(
                "Anode changes",
                f'SELECT "cycle_days" AS "text" FROM "anode_change" {where}',
                "blue",
            ),
            annotation(
                "Anode effects", f'SELECT "peak_v" AS "text" FROM "anode_effect" {where}', "red"
            ),
            annotation(
                "Alarms raised", f'SELECT "value" AS "text" FROM "alarm" {raised}', "orange"
            ),
        ],
    )
