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
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from collector.commands.cli import load_or_exit
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


def report(cfg: Config, args: argparse.Namespace) -> int:
    """The three queries of the days asked for, drawn into ``args.out``."""
    zone = ZoneInfo(cfg.plant.timezone)
    t0 = int(datetime.combine(args.start, time(0), zone).timestamp()) * NS
    t1 = int(datetime.combine(args.end, time(23, 59, 59), zone).timestamp()) * NS
    where = f"\"period\" = 'day' AND time >= {t0} AND time <= {t1}"
    query = InfluxQL(cfg).rows
    days = query(f"SELECT * FROM sec_potline WHERE {where} GROUP BY potline")
    cycles = query(f"SELECT cycle_days FROM anode_change WHERE time >= {t0} AND time <= {t1}")
    effects = query(f"SELECT * FROM ae_potline WHERE {where} GROUP BY potline")
    args.out.write_text(render(args.start, args.end, zone, days, cycles, effects))
    print(f"wrote {args.out}: {len(days)} potline-days, {len(cycles)} anode changes")
    return 0


def render(
    start: date,
    end: date,
    zone: ZoneInfo,
    days: list[dict[str, Any]],
    cycles: list[dict[str, Any]],
    effects: list[dict[str, Any]],
) -> str:
    """The report's HTML."""

    def day_of(t: int) -> str:
        return datetime.fromtimestamp(t / NS, zone).date().isoformat()

    rows = "".join(
        f"<tr><td>{day_of(d['time'])}</td><td>{html.escape(d['potline'])}</td>"
        f"<td>{_num(d.get('sec_kwh_per_t'))}</td><td>{_num(d.get('target_kwh_per_t'))}</td>"
        f"<td>{_num(d.get('baseline_kwh_per_t'))}</td><td>{_num(d.get('savings_kwh_per_t'))}</td>"
        f"<td>{_num(d.get('goal_pct'), 1)}</td><td>{_num(d.get('energy_saved_kwh'))}</td></tr>"
        for d in days
    )
    ae_rows = "".join(
        f"<tr><td>{day_of(e['time'])}</td><td>{html.escape(e['potline'])}</td>"
        f"<td>{e.get('count', 0)}</td><td>{_num(e.get('minutes'), 1)}</td>"
        f"<td>{_num(e.get('co2e_t'), 2)}</td></tr>"
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
    histogram = _bars(known)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>cellmon report {start} to {end}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>cellmon report: {start} to {end}</h1>
<h2>kWh per tonne against the goal, per day</h2>{chart}
<table><tr><th>day</th><th>potline</th><th>kWh/t</th><th>target</th><th>baseline</th>
<th>savings kWh/t</th><th>goal %</th><th>energy saved kWh</th></tr>{rows}</table>
<h2>Anode cycle distribution ({len(known)} changes with a known cycle)</h2>{histogram}
<h2>Anode effects</h2><table><tr><th>day</th><th>potline</th><th>count</th><th>minutes</th>
<th>CO2e t</th></tr>{ae_rows}</table></body></html>
"""


def _num(x: float | None, digits: int = 0) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


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


def _bars(values: list[float]) -> str:
    if not values:
        return "<p>no anode change with a known cycle</p>"
    bins: dict[int, int] = {}
    for v in values:
        bins[round(v)] = bins.get(round(v), 0) + 1
    top = max(bins.values())
    keys = sorted(bins)
    w = (WIDTH - 2 * PAD) / len(keys)
    bars = "".join(
        f'<rect x="{PAD + k * w:.1f}" y="{HEIGHT - PAD - bins[d] / top * (HEIGHT - 2 * PAD):.1f}" '
        f'width="{w * 0.8:.1f}" height="{bins[d] / top * (HEIGHT - 2 * PAD):.1f}" fill="#1f77b4">'
        f"<title>{d} d: {bins[d]}</title></rect>"
        f'<text x="{PAD + k * w:.1f}" y="{HEIGHT - 8}">{d}</text>'
        for k, d in enumerate(keys)
    )
    return f'<svg width="{WIDTH}" height="{HEIGHT}">{bars}</svg>'
