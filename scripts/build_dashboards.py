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
    custom: dict[str, Any] | None = None,
    time_from: str | None = None,
    x: int = 0,
    y: int = 0,
    w: int = 12,
    h: int = 8,
) -> dict[str, Any]:
    """A panel; ``time_from`` overrides the board's range (Grafana's relative time)."""
    targets = [target(chr(65 + k), q, table=table) for k, q in enumerate(queries)]
    defaults: dict[str, Any] = {"unit": unit}
    if custom:
        defaults["custom"] = custom
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
    if time_from is not None:
        out["timeFrom"] = time_from
    return out


def target(ref: str, query: str, *, table: bool) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DS,
        "rawQuery": True,
        "query": query,
        "resultFormat": "table" if table else "time_series",
    }


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


TODAY = "now/d"
"""Grafana's "Today so far": a panel's range from local midnight to now, whatever the board's."""
THIS_MONTH = "now/M"
""""This month so far": from the local first of the month, where its month point is stamped."""
MONTHS = "now-12M/M"
"""The twelve months before this one and this one so far: monthly series."""
SEC_STEPS = {"good": "green", "target": "orange", "baseline": "red"}
"""kWh/t: green below the points' target, amber from it to their baseline, red from that."""


def sec_coloured(built: dict[str, Any], source: str) -> dict[str, Any]:
    """Colour a panel's kWh/t by the target and baseline of the points (``source``: FROM … WHERE).

    Grafana's "Config from query results" makes the config query's fields threshold steps in
    their order, and the first step's value −∞, so ``good`` only names the colour below.
    """
    query = (
        'SELECT last("target_kwh_per_t") AS "good", last("target_kwh_per_t") AS "target", '
        f'last("baseline_kwh_per_t") AS "baseline" {source}'
    )
    built["targets"].append(target("config", query, table=True))
    built["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    mappings = [
        {
            "fieldName": name,
            "handlerKey": "threshold1",
            "handlerArguments": {"threshold": {"color": colour}},
        }
        for name, colour in SEC_STEPS.items()
    ]
    config = {"id": "configFromData", "options": {"configRefId": "config", "mappings": mappings}}
    built["transformations"] = [*built.get("transformations", []), config]
    return built


STACKED_BARS = {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}}
"""Series that add up, drawn as stacked bars."""


def by_query(ref: str, properties: dict[str, Any]) -> dict[str, Any]:
    """Override the fields of one query (refId) of a panel."""
    return {
        "matcher": {"id": "byFrameRefID", "options": ref},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


GOAL_LINE = by_query(
    "B",
    {
        "custom.drawStyle": "line",
        "custom.stacking": {"mode": "none"},
        "color": {"mode": "fixed", "fixedColor": "green"},
    },
)
"""Query B of a stacked panel: the goal, a line over the bars, not stacked on them."""


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
            sec_coloured(
                panel(
                    "kWh/t today",
                    "stat",
                    [f'SELECT last("sec_kwh_per_t") {day}'],
                    time_from=TODAY,
                    w=6,
                    h=5,
                ),
                day,
            ),
            sec_coloured(
                panel(
                    "kWh/t this month",
                    "stat",
                    [f'SELECT last("sec_kwh_per_t") {month}'],
                    time_from=THIS_MONTH,
                    x=6,
                    w=6,
                    h=5,
                ),
                month,
            ),
            panel(
                "Goal reached this month",
                "gauge",
                [f'SELECT last("goal_pct") {month}'],
                unit="percent",
                time_from=THIS_MONTH,
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
                time_from=THIS_MONTH,
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
                time_from=TODAY,
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
                time_from=TODAY,
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
            sec_coloured(
                panel(
                    "kWh/t per cell today",
                    "table",
                    [
                        f'SELECT last("sec_kwh_per_t") AS "sec_kwh_per_t" FROM "sec_cell" WHERE '
                        f'{POTLINE} AND "period" = \'day\' AND $timeFilter GROUP BY "cell"'
                    ],
                    table=True,
                    time_from=TODAY,
                    y=13,
                    w=24,
                ),
                day,
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
    """A cell over the board's days, from its minute aggregates (contract 5.4).

    The bath temperature, which those do not carry, from the raw samples.
    """

    def series(measurement: str) -> str:
        return (
            f'FROM "{measurement}" WHERE {CELL} AND $timeFilter '
            "GROUP BY time($__interval) fill(none)"
        )

    return dashboard(
        "cellmon-cell",
        "Cell detail",
        [
            panel(
                "Cell voltage",
                "timeseries",
                [
                    'SELECT mean("voltage_v_mean") AS "mean", min("voltage_v_min") AS "min", '
                    f'max("voltage_v_max") AS "max" {series("cell_1m")}'
                ],
                unit="volt",
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 4.5}],
                },
            ),
            panel(
                "Line current",
                "timeseries",
                [f'SELECT mean("current_ka_mean") AS "current" {series("cell_1m")}'],
                unit="kA",
                x=12,
            ),
            panel(
                "Resistance noise",
                "timeseries",
                [f'SELECT mean("noise_uohm_mean") AS "noise" {series("cell_1m")}'],
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
                [f'SELECT mean("bath_temp_c") {series("cell")}'],
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
                    f'SELECT "target_kwh_per_t" AS "target", "baseline_kwh_per_t" AS "baseline" '
                    f'FROM "sec_cell" WHERE {CELL} AND "period" = \'day\' AND $timeFilter',
                ],
                y=16,
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
    """kWh/t against the goal, and why it moved (contract 5.3).

    Per day over the board's range, per month over the last twelve months and this one.
    """

    def sec(period: str) -> str:
        return f'FROM "sec_potline" WHERE {POTLINE} AND "period" = \'{period}\' AND $timeFilter'

    against = 'SELECT "sec_kwh_per_t", "target_kwh_per_t", "baseline_kwh_per_t" '
    return dashboard(
        "cellmon-energy",
        "Energy savings",
        [
            panel("Daily kWh/t against the goal", "timeseries", [against + sec("day")]),
            panel(
                "Monthly kWh/t against the goal",
                "timeseries",
                [against + sec("month")],
                time_from=MONTHS,
                x=12,
            ),
            savings_split("Savings per day: voltage and current efficiency", sec("day"), y=8),
            savings_split(
                "Savings per month: voltage and current efficiency",
                sec("month"),
                time_from=MONTHS,
                x=12,
                y=8,
            ),
            anode_effects_cost(sec("day"), y=16),
            panel(
                "Current efficiency, measured and configured",
                "timeseries",
                [
                    'SELECT "ce_measured_pct" AS "measured", "ce_configured_pct" AS "configured" '
                    + sec("month")
                ],
                unit="percent",
                custom={"drawStyle": "points", "pointSize": 10},
                time_from=MONTHS,
                x=12,
                y=16,
            ),
            panel(
                "Mean cell voltage (current-weighted)",
                "timeseries",
                [f'SELECT "voltage_avg_v" AS "voltage" {sec("day")}'],
                unit="volt",
                y=24,
            ),
            panel(
                "Goal reached",
                "timeseries",
                [f'SELECT "goal_pct" {sec("month")}'],
                unit="percent",
                time_from=MONTHS,
                x=12,
                y=24,
            ),
            panel(
                "Energy saved, cumulative",
                "timeseries",
                [f'SELECT cumulative_sum("energy_saved_kwh") {sec("day")}'],
                unit="kwatth",
                y=32,
            ),
            panel(
                "Money saved, cumulative",
                "timeseries",
                [f'SELECT cumulative_sum("cost_saved_cny") {sec("day")}'],
                unit="currencyCNY",
                x=12,
                y=32,
            ),
        ],
        [POTLINE_VAR],
    )


def savings_split(title: str, source: str, **place: Any) -> dict[str, Any]:
    """The savings as stacked bars of their voltage and current-efficiency parts, and the goal."""
    return panel(
        title,
        "timeseries",
        [
            'SELECT "savings_voltage_kwh_per_t" AS "voltage", '
            f'"savings_ce_kwh_per_t" AS "current efficiency" {source}',
            f'SELECT "goal_kwh_per_t" AS "goal" {source}',
        ],
        unit="suffix: kWh/t",
        custom=STACKED_BARS,
        overrides=[GOAL_LINE],
        **place,
    )


def anode_effects_cost(source: str, **place: Any) -> dict[str, Any]:
    """The energy and environment targets together.

    What the anode effects cost in mV and kWh/t, beside their PFC emissions in CO2e.
    """
    return panel(
        "Anode effects: energy and emissions",
        "timeseries",
        [
            f'SELECT "ae_voltage_mv" AS "mV" {source}',
            f'SELECT "ae_kwh_per_t" AS "kWh/t" {source}',
            f'SELECT "co2e_t" AS "CO2e" FROM "ae_potline" WHERE {POTLINE} '
            "AND \"period\" = 'day' AND $timeFilter",
        ],
        overrides=[
            by_query("A", {"unit": "mvolt"}),
            by_query("B", {"unit": "suffix: kWh/t"}),
            by_query("C", {"unit": "masst", "custom.axisPlacement": "right"}),
        ],
        **place,
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
            panel(
                "Sparkplug B: messages lost and births",
                "table",
                [
                    'SELECT spread("sparkplug_lost") AS "lost (seq gaps)", '
                    'spread("sparkplug_seq_gaps") AS "gaps", '
                    'spread("sparkplug_unknown_alias") AS "unknown aliases", '
                    'spread("sparkplug_rebirth_requests") AS "rebirths asked", '
                    'spread("sparkplug_births") AS "births", '
                    'spread("sparkplug_deaths") AS "deaths" '
                    'FROM "cellmon" WHERE $timeFilter GROUP BY "instance"'
                ],
                table=True,
                y=17,
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
