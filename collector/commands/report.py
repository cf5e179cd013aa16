"""``cellmon report``: a Grafana-free look at the plant's targets, as one HTML file.

Reads the contract measurements back from InfluxDB with InfluxQL (1.x ``/query``, or 2.x
through its DBRP mapping) for a range of local days, and draws kWh/t against baseline and
target, the anode cycle distribution and the anode effects as inline SVG: one file that
opens anywhere, with nothing to install.

A database that refuses the queries (a wrong password) or cannot be reached is an error,
exit 1 with the reason: an empty report would look like a plant that produced nothing.
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from collector.commands import report_savings
from collector.commands.cli import load_or_exit
from collector.commands.report_savings import Savings, number
from collector.config.models import Config
from collector.sinks.influxql import InfluxQL, QueryError

NS = 1_000_000_000
WIDTH, HEIGHT, PAD = 640, 220, 36


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellmon report``."""
    parser.add_argument("--config", default="config/cellmon.yaml", help="config file")
    parser.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        required=True,
        help="first local day, YYYY-MM-DD",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=date.fromisoformat,
        required=True,
        help="last local day, YYYY-MM-DD",
    )
    parser.add_argument("--out", type=Path, default=Path("cellmon-report.html"))


def run(args: argparse.Namespace) -> int:
    """Query, draw, write; 1 with the reason on stderr when the database does not answer."""
    cfg = load_or_exit(args.config)
    try:
        return report(cfg, args)
    except QueryError as err:
        print(f"cellmon report: {err}; no report written", file=sys.stderr)
        return 1


@dataclass(frozen=True)
class Data:
    """What the report shows, as read from the database."""

    days: list[dict[str, Any]]  # sec_potline per day
    months: list[dict[str, Any]]  # sec_potline per month the days touch
    cycles: list[dict[str, Any]]  # anode_change
    effects: list[dict[str, Any]]  # ae_potline per day
    target_cycle_days: float
    savings: Savings


def report(cfg: Config, args: argparse.Namespace) -> int:
    """The queries of the days asked for, drawn into ``args.out``."""
    zone = ZoneInfo(cfg.plant.timezone)
    t0 = int(datetime.combine(args.start, time(0), zone).timestamp()) * NS
    t1 = int(datetime.combine(args.end, time(23, 59, 59), zone).timestamp()) * NS
    m0 = int(datetime.combine(args.start.replace(day=1), time(0), zone).timestamp()) * NS
    span = f"time >= {t0} AND time <= {t1}"
    query = InfluxQL(cfg).rows
    data = Data(
        days=query(
            f"SELECT * FROM sec_potline WHERE \"period\" = 'day' AND {span} GROUP BY potline"
        ),
        months=query(
            "SELECT * FROM sec_potline WHERE \"period\" = 'month' "
            f"AND time >= {m0} AND time <= {t1} GROUP BY potline"
        ),
        cycles=query(f"SELECT cycle_days FROM anode_change WHERE {span}"),
        effects=query(
            f"SELECT * FROM ae_potline WHERE \"period\" = 'day' AND {span} GROUP BY potline"
        ),
        target_cycle_days=cfg.targets.anode_cycle_days,
        savings=report_savings.read(query, span, cfg.plant.tariff_cny_per_kwh),
    )
    args.out.write_text(render(args.start, args.end, zone, data))
    print(f"wrote {args.out}: {len(data.days)} potline-days, {len(data.cycles)} anode changes")
    return 0


def render(start: date, end: date, zone: ZoneInfo, data: Data) -> str:
    """The report's HTML."""

    def day_of(t: int) -> str:
        return datetime.fromtimestamp(t / NS, zone).date().isoformat()

    days, cycles, effects = data.days, data.cycles, data.effects
    rows = "".join(
        f"<tr><td>{day_of(d['time'])}</td><td>{html.escape(d['potline'])}</td>"
        f"<td>{number(d.get('sec_kwh_per_t'))}</td><td>{number(d.get('target_kwh_per_t'))}</td>"
        f"<td>{number(d.get('baseline_kwh_per_t'))}</td><td>{number(d.get('savings_kwh_per_t'))}</td>"
        f"<td>{number(d.get('savings_voltage_kwh_per_t'), 1)}</td>"
        f"<td>{number(d.get('savings_ce_kwh_per_t'), 1)}</td>"
        f"<td>{number(d.get('voltage_avg_v'), 3)}</td><td>{number(d.get('ae_kwh_per_t'), 1)}</td>"
        f"<td>{number(d.get('goal_pct'), 1)}</td><td>{number(d.get('energy_saved_kwh'))}</td></tr>"
        for d in days
    )
    month_rows = "".join(
        f"<tr><td>{day_of(m['time'])[:7]}</td><td>{html.escape(m['potline'])}</td>"
        f"<td>{number(m.get('sec_kwh_per_t'))}</td><td>{number(m.get('ce_configured_pct'), 2)}</td>"
        f"<td>{number(m.get('ce_measured_pct'), 2)}</td>"
        f"<td>{html.escape(str(m.get('ce_basis') or ''))}</td></tr>"
        for m in data.months
    )
    ae_rows = "".join(
        f"<tr><td>{day_of(e['time'])}</td><td>{html.escape(e['potline'])}</td>"
        f"<td>{e.get('count', 0)}</td><td>{number(e.get('minutes'), 1)}</td>"
        f"<td>{number(e.get('co2e_t'), 2)}</td></tr>"
        for e in effects
    )
    sec = [d for d in days if d.get("sec_kwh_per_t") is not None]
    chart = _lines(
        {
            "kWh/t": [d["sec_kwh_per_t"] for d in sec],
            "target": [d["target_kwh_per_t"] for d in sec],
            "baseline": [d["baseline_kwh_per_t"] for d in sec],
        }
    )
    known = [c["cycle_days"] for c in cycles if c.get("cycle_days") is not None]
    histogram = _bars(known, data.target_cycle_days)
    split = _split_bars([(day_of(d["time"]), d) for d in sec])
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>cellmon report {start} to {end}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>cellmon report: {start} to {end}</h1>
<h2>kWh per tonne against the goal, per day</h2>{chart}
<h2>Why it moved: the savings by voltage and by current efficiency, per day</h2>{split}
<table><tr><th>day</th><th>potline</th><th>kWh/t</th><th>target</th><th>baseline</th>
<th>savings kWh/t</th><th>by voltage</th><th>by CE</th><th>mean voltage V</th>
<th>anode effects kWh/t</th><th>goal %</th><th>energy saved kWh</th></tr>{rows}</table>
<h2>Current efficiency, per month: configured and measured from the taps</h2>
<table id="ce"><tr><th>month</th><th>potline</th><th>kWh/t</th><th>configured %</th>
<th>measured %</th><th>basis</th></tr>{month_rows}</table>
{report_savings.render(data.savings)}
<h2>Anode cycle distribution ({len(known)} changes with a known cycle,
target {data.target_cycle_days:g} days)</h2>{histogram}
<h2>Anode effects</h2><table><tr><th>day</th><th>potline</th><th>count</th><th>minutes</th>
<th>CO2e t</th></tr>{ae_rows}</table></body></html>
"""


def _lines(series: dict[str, list[float]]) -> str:
    values = [v for s in series.values() for v in s]
    if not values:
        return "<p>no data</p>"
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    colours = ["#1f77b4", "#2ca02c", "#d62728"]
    paths = []
    for (name, ys), colour in zip(series.items(), colours, strict=False):
        n = max(len(ys) - 1, 1)
        pts = " ".join(
            f"{PAD + k * (WIDTH - 2 * PAD) / n:.1f},"
            f"{HEIGHT - PAD - (y - low) / span * (HEIGHT - 2 * PAD):.1f}"
            for k, y in enumerate(ys)
        )
        paths.append(
            f'<polyline fill="none" stroke="{colour}" points="{pts}">'
            f"<title>{name}</title></polyline>"
        )
    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}">{"".join(paths)}'
        f'<text x="2" y="12">{high:,.0f}</text><text x="2" y="{HEIGHT - 4}">{low:,.0f}</text>'
        "</svg>"
    )


def _bars(values: list[float], target: float) -> str:
    """A histogram of the cycles by whole day, the target day marked."""
    if not values:
        return "<p>no anode change with a known cycle</p>"
    bins: dict[int, int] = {}
    for v in values:
        bins[round(v)] = bins.get(round(v), 0) + 1
    top = max(bins.values())
    keys = list(range(min(*bins, round(target)), max(*bins, round(target)) + 1))
    w = (WIDTH - 2 * PAD) / len(keys)
    bars = "".join(
        f'<rect class="cycle" x="{PAD + k * w:.1f}" '
        f'y="{HEIGHT - PAD - bins.get(d, 0) / top * (HEIGHT - 2 * PAD):.1f}" '
        f'width="{w * 0.8:.1f}" height="{bins.get(d, 0) / top * (HEIGHT - 2 * PAD):.1f}" '
        f'fill="{"#2ca02c" if d == round(target) else "#1f77b4"}">'
        f"<title>{d} d: {bins.get(d, 0)}</title></rect>"
        f'<text x="{PAD + k * w:.1f}" y="{HEIGHT - 8}">{d}</text>'
        for k, d in enumerate(keys)
    )
    return f'<svg width="{WIDTH}" height="{HEIGHT}">{bars}</svg>'


def _split_bars(days: list[tuple[str, dict[str, Any]]]) -> str:
    """Per day, the voltage and CE parts stacked from zero (up for savings), goal as a line."""
    parts = [
        (day, float(d["savings_voltage_kwh_per_t"]), float(d["savings_ce_kwh_per_t"]), d)
        for day, d in days
        if d.get("savings_voltage_kwh_per_t") is not None
        and d.get("savings_ce_kwh_per_t") is not None
    ]
    if not parts:
        return "<p>no split: set the potline's baseline_voltage_v</p>"
    goal = max(float(p[3].get("goal_kwh_per_t") or 0.0) for p in parts)
    ups = [max(v, 0) + max(c, 0) for _, v, c, _ in parts] + [goal]
    downs = [min(v, 0) + min(c, 0) for _, v, c, _ in parts]
    high, low = max(ups), min([0.0, *downs])
    scale = (HEIGHT - 2 * PAD) / ((high - low) or 1.0)
    zero = PAD + high * scale
    w = (WIDTH - 2 * PAD) / len(parts)
    shapes = []
    for k, (day, volts, ce, _) in enumerate(parts):
        x = PAD + k * w
        up = down = zero
        for name, value, colour in (("voltage", volts, "#1f77b4"), ("CE", ce, "#ff7f0e")):
            h = abs(value) * scale
            y = up - h if value >= 0 else down
            up, down = (y, down) if value >= 0 else (up, down + h)
            shapes.append(
                f'<rect class="split {name}" x="{x:.1f}" y="{y:.1f}" width="{w * 0.8:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{day} {name}: {value:.1f} kWh/t'
                "</title></rect>"
            )
        shapes.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}">{day[5:]}</text>')
    y_goal = zero - goal * scale
    shapes.append(
        f'<line class="goal" x1="{PAD}" x2="{WIDTH - PAD}" y1="{y_goal:.1f}" y2="{y_goal:.1f}" '
        f'stroke="#2ca02c" stroke-dasharray="4"><title>goal {goal:g} kWh/t</title></line>'
    )
    return f'<svg id="split" width="{WIDTH}" height="{HEIGHT}">{"".join(shapes)}</svg>'
