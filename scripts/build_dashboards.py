"""Dashboards as code: writes config/grafana/dashboards/*.json (InfluxQL only).

Run after editing; ``tests/grafana/test_dashboards.py`` fails when the JSON files and this
script disagree, and runs every panel's query against InfluxDB filled by the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "config" / "grafana" / "dashboards"
DS = {"type": "influxdb", "uid": "cellmon-influxql"}
POTLINE = '"potline" =~ /^$potline$/'
CELL = '"cell" =~ /^$cell$/'
GREEN_RED = {
    "mode": "absolute",
    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 80}],
}


def variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": DS,
        "query": query,
        "refresh": 1,
        "includeAll": False,
        "multi": False,
    }


POTLINE_VAR = variable("potline", 'SHOW TAG VALUES FROM "sec_potline" WITH KEY = "potline"')
CELL_VAR = variable("cell", f'SHOW TAG VALUES FROM "cell" WITH KEY = "cell" WHERE {POTLINE}')


def panel(
    title: str,
    kind: str,
    queries: list[str],
    *,
    unit: str = "none",
    table: bool = False,
    thresholds: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    no_value: str | None = None,
    x: int = 0,
    y: int = 0,
    w: int = 12,
    h: int = 8,
) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(65 + k),
            "datasource": DS,
            "rawQuery": True,
            "query": q,
            "resultFormat": "table" if table else "time_series",
        }
        for k, q in enumerate(queries)
    ]
    defaults: dict[str, Any] = {"unit": unit}
    if no_value is not None:  # shown instead of "No data" when the query has no rows
        defaults["noValue"] = no_value
    if thresholds:
        defaults["thresholds"] = thresholds
        defaults["color"] = {"mode": "thresholds"}
    out = {
        "title": title,
        "type": kind,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
    }
    if transformations:
        out["transformations"] = transformations
    return out


def colour_by_value(field: str, colours: dict[str, str], cell: str) -> dict[str, Any]:
    """A table column whose cells are coloured by their text (``cell``: Grafana cell type)."""
    options = {
        value: {"color": colour, "index": k} for k, (value, colour) in enumerate(colours.items())
    }
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [
            {"id": "mappings", "value": [{"type": "value", "options": options}]},
            {"id": "custom.cellOptions", "value": {"type": cell}},
        ],
    }


STATE_COLOURS = [
    colour_by_value("state", {"raised": "red", "cleared": "green"}, "color-background"),
    colour_by_value(
        "severity", {"critical": "red", "warning": "orange", "info": "blue"}, "color-text"
    ),
]
"""Alarm tables: a raised alarm red, a cleared one green; severity by colour."""

ONLY_RAISED = [
    {
        "id": "filterByValue",
        "options": {
            "type": "include",
            "match": "any",
            "filters": [
                {
                    "fieldName": "state",
                    "config": {"id": "equal", "options": {"value": "raised"}},
                }
            ],
        },
    }
]
"""Of each alarm's last transition, those that left it raised: the alarms standing now."""

ALARM_SERIES = 'GROUP BY "cell", "rule", "severity"'
"""One alarm: a potline's cell, rule and severity. A rules change that alters an alarm's
severity clears it under the old one, so only the series of the new severity can stand."""


def last_transitions(where: str) -> str:
    """Each alarm's last transition in the range, with its value."""
    return (
        f'SELECT last("state") AS "state", "value" FROM "alarm" WHERE {where} AND $timeFilter '
        + ALARM_SERIES
    )


def alarms_standing(where: str) -> str:
    """How many alarms stand: last transitions that left them raised (none: no rows)."""
    last = f'SELECT last("state") AS "state" FROM "alarm" WHERE {where} AND $timeFilter'
    raised = "\"state\" = 'raised'"
    return f'SELECT count("state") AS "alarms" FROM ({last} {ALARM_SERIES}) WHERE {raised}'


def sec_thresholds(target: float = 13350, baseline: float = 13450) -> dict[str, Any]:
    """Green at or below the target, amber up to the baseline, red above it."""
    return {
        "mode": "absolute",
        "steps": [
            {"color": "green", "value": None},
            {"color": "orange", "value": target},
            {"color": "red", "value": baseline},
        ],
    }


def annotation(name: str, query: str, colour: str) -> dict[str, Any]:
    """Events drawn over every time series of the board."""
    return {
        "name": name,
        "datasource": DS,
        "enable": True,
        "iconColor": colour,
        "query": query,
        "textColumn": "text",
    }


def dashboard(
    uid: str,
    title: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    annotations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    for k, p in enumerate(panels, start=1):
        p["id"] = k
    return {
        "uid": uid,
        "title": title,
        "tags": ["cellmon"],
        "timezone": "browser",
        "schemaVersion": 39,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "templating": {"list": variables},
        "panels": panels,
        "annotations": {"list": annotations or []},
    }


def overview() -> dict[str, Any]:
    day = f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'day\' AND $timeFilter'
    month = f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'month\' AND $timeFilter'
    return dashboard(
        "cellmon-overview",
        "Potline overview",
        [
            panel(
                "kWh/t today",
                "stat",
                [f'SELECT last("sec_kwh_per_t") {day}'],
                unit="none",
                thresholds=sec_thresholds(),
                w=6,
                h=5,
            ),
            panel(
                "kWh/t this month",
                "stat",
                [f'SELECT last("sec_kwh_per_t") {month}'],
                thresholds=sec_thresholds(),
                x=6,
                w=6,
                h=5,
            ),
            panel(
                "Goal reached this month",
                "gauge",
                [f'SELECT last("goal_pct") {month}'],
                unit="percent",
                x=12,
                w=6,
                h=5,
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "green", "value": 100}],
                },
            ),
            panel(
                "Saved this month",
                "stat",
                [
                    f'SELECT last("energy_saved_kwh") AS "kWh", '
                    f'last("cost_saved_cny") AS "CNY" {month}'
                ],
                x=18,
                w=6,
                h=5,
            ),
            panel(
                "Anode changes today",
                "stat",
                [
                    f'SELECT last("changes") FROM "anode_potline" WHERE {POTLINE} '
                    "AND \"period\" = 'day' AND $timeFilter"
                ],
                y=5,
                w=6,
                h=5,
            ),
            panel(
                "Anode effects today",
                "stat",
                [
                    f'SELECT last("count") FROM "ae_potline" WHERE {POTLINE} '
                    "AND \"period\" = 'day' AND $timeFilter"
                ],
                x=6,
                y=5,
                w=6,
                h=5,
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                },
            ),
            panel(
                "Cell voltage now",
                "table",
                [
                    f'SELECT last("voltage_v") AS "voltage_v" FROM "cell" WHERE {POTLINE} '
                    'AND $timeFilter GROUP BY "cell"'
                ],
                unit="volt",
                table=True,
                x=12,
                y=5,
                thresholds={
                    "mode": "absolute",
                    "steps": [
                        {"color": "blue", "value": None},
                        {"color": "green", "value": 3.8},
                        {"color": "red", "value": 4.5},
                    ],
                },
            ),
            panel(
                "kWh/t per cell today",
                "table",
                [
                    f'SELECT last("sec_kwh_per_t") AS "sec_kwh_per_t" FROM "sec_cell" WHERE '
                    f'{POTLINE} AND "period" = \'day\' AND $timeFilter GROUP BY "cell"'
                ],
                table=True,
                thresholds=sec_thresholds(),
                y=13,
                w=24,
            ),
            panel(
                "Cells in alarm",
                "table",
                [last_transitions(POTLINE)],
                table=True,
                overrides=STATE_COLOURS,
                transformations=ONLY_RAISED,
                y=21,
            ),
            panel(
                "Alarm transitions",
                "table",
                [
                    f'SELECT "state", "value" FROM "alarm" WHERE {POTLINE} AND $timeFilter '
                    'GROUP BY "cell", "rule", "severity"'
                ],
                table=True,
                overrides=STATE_COLOURS,
                x=12,
                y=21,
            ),
            panel(
                "Alarms standing",
                "stat",
                [alarms_standing(POTLINE)],
                no_value="0",
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                },
                y=10,
                h=3,
            ),
        ],
        [POTLINE_VAR],
    )


def cell_detail() -> dict[str, Any]:
    series = 'FROM "cell" WHERE {} AND $timeFilter GROUP BY time($__interval) fill(none)'
    return dashboard(
        "cellmon-cell",
        "Cell detail",
        [
            panel(
                "Cell voltage",
                "timeseries",
                [f'SELECT mean("voltage_v") {series.format(CELL)}'],
                unit="volt",
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 4.5}],
                },
            ),
            panel(
                "Line current",
                "timeseries",
                [f'SELECT mean("current_ka") {series.format(CELL)}'],
                unit="kA",
                x=12,
            ),
            panel(
                "Resistance noise",
                "timeseries",
                [f'SELECT mean("noise_uohm") {series.format(CELL)}'],
                unit="µΩ",
                y=8,
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 25}],
                },
            ),
            panel(
                "Bath temperature",
                "timeseries",
                [f'SELECT mean("bath_temp_c") {series.format(CELL)}'],
                unit="celsius",
                x=12,
                y=8,
            ),
            panel(
                "kWh/t by shift and day",
                "timeseries",
                [
                    f'SELECT "sec_kwh_per_t" AS "shift" FROM "sec_cell" WHERE {CELL} '
                    "AND \"period\" = 'shift' AND $timeFilter",
                    f'SELECT "sec_kwh_per_t" AS "day" FROM "sec_cell" WHERE {CELL} '
                    "AND \"period\" = 'day' AND $timeFilter",
                ],
                y=16,
                thresholds=sec_thresholds(),
            ),
            panel(
                "Anode changes",
                "table",
                [
                    f'SELECT "cycle_days", "deviation_days", "on_target" FROM "anode_change" '
                    f'WHERE {CELL} AND $timeFilter GROUP BY "anode", "block"'
                ],
                table=True,
                x=12,
                y=16,
            ),
            panel(
                "Anode effects",
                "table",
                [f'SELECT "duration_s", "peak_v" FROM "anode_effect" WHERE {CELL} AND $timeFilter'],
                table=True,
                y=24,
            ),
            panel(
                "Alarms",
                "table",
                [
                    f'SELECT "state", "value" FROM "alarm" WHERE {CELL} AND $timeFilter '
                    'GROUP BY "rule", "severity"'
                ],
                table=True,
                overrides=STATE_COLOURS,
                x=12,
                y=24,
            ),
        ],
        [POTLINE_VAR, CELL_VAR],
        [
            annotation(
                "Anode changes",
                f'SELECT "cycle_days" AS "text" FROM "anode_change" WHERE {CELL} AND $timeFilter',
                "blue",
            ),
            annotation(
                "Anode effects",
                f'SELECT "peak_v" AS "text" FROM "anode_effect" WHERE {CELL} AND $timeFilter',
                "red",
            ),
            annotation(
                "Alarms raised",
                f'SELECT "value" AS "text" FROM "alarm" WHERE {CELL} AND "state" = \'raised\' '
                "AND $timeFilter",
                "orange",
            ),
        ],
    )


def anodes() -> dict[str, Any]:
    day = f'FROM "anode_potline" WHERE {POTLINE} AND "period" = \'day\' AND $timeFilter'
    return dashboard(
        "cellmon-anodes",
        "Anodes",
        [
            panel(
                "Cycle length",
                "histogram",
                [f'SELECT "cycle_days" FROM "anode_change" WHERE {POTLINE} AND $timeFilter'],
                unit="d",
            ),
            panel(
                "On-target share",
                "timeseries",
                [f'SELECT "on_target_pct" {day}'],
                unit="percent",
                x=12,
            ),
            panel(
                "590-block share",
                "timeseries",
                [f'SELECT "target_block_share_pct" {day}'],
                unit="percent",
                y=8,
            ),
            panel(
                "Mean cycle", "timeseries", [f'SELECT "mean_cycle_days" {day}'], unit="d", x=12, y=8
            ),
            panel(
                "Anodes overdue",
                "table",
                [
                    'SELECT last("overdue_days") AS "overdue_days" FROM "anode_overdue" '
                    f"WHERE {POTLINE} "
                    'AND $timeFilter GROUP BY "cell", "anode"'
                ],
                table=True,
                unit="d",
                y=16,
                w=24,
                thresholds=GREEN_RED,
            ),
        ],
        [POTLINE_VAR],
    )


def energy() -> dict[str, Any]:
    def sec(period: str) -> str:
        return f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'{period}\' AND $timeFilter'

    return dashboard(
        "cellmon-energy",
        "Energy savings",
        [
            panel(
                "Daily kWh/t against the goal",
                "timeseries",
                [f'SELECT "sec_kwh_per_t", "target_kwh_per_t", "baseline_kwh_per_t" {sec("day")}'],
            ),
            panel(
                "Monthly kWh/t against the goal",
                "timeseries",
                [
                    'SELECT "sec_kwh_per_t", "target_kwh_per_t", "baseline_kwh_per_t" '
                    f"{sec('month')}"
                ],
                x=12,
            ),
            panel(
                "Energy saved, cumulative",
                "timeseries",
                [f'SELECT cumulative_sum("energy_saved_kwh") {sec("day")}'],
                unit="kwatth",
                y=8,
            ),
            panel(
                "Money saved, cumulative",
                "timeseries",
                [f'SELECT cumulative_sum("cost_saved_cny") {sec("day")}'],
                unit="currencyCNY",
                x=12,
                y=8,
            ),
            panel(
                "PFC emissions (CO2e)",
                "timeseries",
                [
                    f'SELECT "co2e_t" FROM "ae_potline" WHERE {POTLINE} AND "period" = \'day\' '
                    "AND $timeFilter"
                ],
                unit="t",
                y=16,
            ),
            panel(
                "Goal reached",
                "timeseries",
                [f'SELECT "goal_pct" {sec("month")}'],
                unit="percent",
                x=12,
                y=16,
            ),
        ],
        [POTLINE_VAR],
    )


def health() -> dict[str, Any]:
    """The pipeline itself, from its self-metrics: for the plant's IT and the on-call engineer.

    The counters are cumulative, so rates are derivatives between consecutive points and the
    stats are what a counter moved within the range (``spread``).
    """
    rate = (
        'SELECT non_negative_derivative(last("{}"), 1s) AS "{}" FROM "cellmon" '
        'WHERE $timeFilter GROUP BY time($__interval), "instance" fill(none)'
    )
    moved = 'SELECT spread("{}") AS "{}" FROM "cellmon" WHERE $timeFilter GROUP BY "instance"'
    red_above_zero = {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
    }
    stat_w = 4
    return dashboard(
        "cellmon-health",
        "cellmon health",
        [
            panel(
                title,
                "stat",
                [moved.format(field, field)],
                thresholds=red_above_zero,
                x=k * stat_w,
                w=stat_w,
                h=4,
            )
            for k, (title, field) in enumerate(
                [
                    ("Rejected messages", "rejected"),
                    ("Late samples", "late"),
                    ("Processor errors", "processor_errors"),
                    ("Database write errors", "write_errors"),
                    ("Samples dropped (buffer full)", "dropped"),
                    ("Rules edits refused", "rules_rejected"),
                ]
            )
        ]
        + [
            panel(
                "Throughput",
                "timeseries",
                [
                    rate.format("received", "received/s"),
                    rate.format("written", "written/s"),
                    rate.format("rejected", "rejected/s"),
                ],
                unit="ops",
                y=4,
            ),
            panel(
                "Backlog to the database",
                "timeseries",
                [
                    'SELECT last("lag_s") AS "lag_s" FROM "cellmon" WHERE $timeFilter '
                    'GROUP BY time($__interval), "instance" fill(none)',
                    'SELECT last("buffered") AS "buffered lines" FROM "cellmon" WHERE $timeFilter '
                    'GROUP BY time($__interval), "instance" fill(none)',
                ],
                x=12,
                y=4,
            ),
            panel(
                "Rules reloads and alerts",
                "table",
                [
                    'SELECT last("rules_reloads") AS "reloads", last("rules_rejected") AS '
                    '"refused", last("alerts_published") AS "alerts published" FROM "cellmon" '
                    'WHERE $timeFilter GROUP BY "instance"'
                ],
                table=True,
                y=12,
                w=24,
                h=5,
            ),
        ],
        [],
    )


BOARDS = {
    "overview": overview,
    "cell": cell_detail,
    "anodes": anodes,
    "energy": energy,
    "health": health,
}


def render() -> dict[str, str]:
    """File name → JSON text of every board."""
    return {
        f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in BOARDS.items()
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
