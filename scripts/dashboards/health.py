"""cellmon health: the pipeline itself, for the plant's IT and the on-call engineer.

From its self-metrics (measurement ``cellmon``).

The counters are cumulative, so rates are derivatives between consecutive points and the
stats are what a counter moved within the range (``spread``).
"""

from __future__ import annotations

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as model

from .common import at, board, coloured, red_from, stat_panel, table_panel, timeseries_panel

PER_INTERVAL = 'WHERE $timeFilter GROUP BY time($__interval), "instance" fill(none)'
PER_INSTANCE = 'WHERE $timeFilter GROUP BY "instance"'
COUNTERS = [
    ("Rejected messages", "rejected"),
    ("Late samples", "late"),
    ("Processor errors", "processor_errors"),
    ("Database write errors", "write_errors"),
    ("Samples dropped (buffer full)", "dropped"),
    ("Rules edits refused", "rules_rejected"),
]
"""What should not move: each a stat, red from 1."""
SPARKPLUG = [
    ("sparkplug_lost", "lost (seq gaps)"),
    ("sparkplug_seq_gaps", "gaps"),
    ("sparkplug_unknown_alias", "unknown aliases"),
    ("sparkplug_rebirth_requests", "rebirths asked"),
    ("sparkplug_births", "births"),
    ("sparkplug_deaths", "deaths"),
]


def rate(field: str, name: str) -> str:
    """Per second, between the counter's last values of consecutive intervals."""
    per_second = f'non_negative_derivative(last("{field}"), 1s)'
    return f'SELECT {per_second} AS "{name}" FROM "cellmon" {PER_INTERVAL}'


def moved(field: str) -> str:
    """What the counter moved within the range, per instance."""
    return f'SELECT spread("{field}") AS "{field}" FROM "cellmon" {PER_INSTANCE}'


def counter_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """The top row: six stats of a third of a half each."""
    width = 4
    return [
        coloured(stat_panel(title, moved(field), place=at(x=k * width, w=width, h=4)), *red_from(1))
        for k, (title, field) in enumerate(COUNTERS)
    ]


def flow_panels() -> list[cogbuilder.Builder[model.Panel]]:
    """Throughput and backlog over time, rules and Sparkplug B per instance."""
    reloads = (
        'SELECT last("rules_reloads") AS "reloads", last("rules_rejected") AS '
        f'"refused", last("alerts_published") AS "alerts published" FROM "cellmon" {PER_INSTANCE}'
    )
    spreads = ", ".join(f'spread("{field}") AS "{name}"' for field, name in SPARKPLUG)
    sparkplug = f'SELECT {spreads} FROM "cellmon" {PER_INSTANCE}'
    return [
        timeseries_panel(
            "Throughput",
            rate("received", "received/s"),
            rate("written", "written/s"),
            rate("rejected", "rejected/s"),
            unit="ops",
            place=at(y=4),
        ),
        timeseries_panel(
            "Backlog to the database",
            f'SELECT last("lag_s") AS "lag_s" FROM "cellmon" {PER_INTERVAL}',
            f'SELECT last("buffered") AS "buffered lines" FROM "cellmon" {PER_INTERVAL}',
            place=at(x=12, y=4),
        ),
        table_panel("Rules reloads and alerts", reloads, place=at(y=12, w=24, h=5)),
        table_panel("Sparkplug B: messages lost and births", sparkplug, place=at(y=17, w=24, h=5)),
        clock_panel(),
    ]


def clock_panel() -> cogbuilder.Builder[model.Panel]:
    """The controllers whose clocks are furthest off (``cell_clock``, contract 6.5).

    A clock that jumps is the first cause of late samples and lost kWh/t. Per cell, the
    worst minute's |offset| in the range, its latest offset and its live samples (sort by
    the first column): InfluxQL aggregates no ``abs``, so a subquery takes it per point.
    """
    inner = (
        'SELECT abs("offset_s") AS "worst", "offset_s" AS "latest", "samples" '
        'FROM "cell_clock" WHERE $timeFilter GROUP BY "potline", "cell"'
    )
    worst = (
        'SELECT max("worst") AS "worst |offset| s", last("latest") AS "latest offset s", '
        f'sum("samples") AS "live samples" FROM ({inner}) GROUP BY "potline", "cell"'
    )
    return table_panel(
        "Controller clocks: worst offsets (arrival − ts)", worst, place=at(y=22, w=24, h=8)
    )


def health() -> model.Dashboard:
    return board("cellmon-health", "cellmon health", [*counter_panels(), *flow_panels()])
