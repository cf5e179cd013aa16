"""The report's "Where the savings are": the cells to work on first, and the anode changes.

Two questions a process engineer brings to a monthly review, answered from the points
cellmon wrote (contract 6.2, 6.3): which cells' voltage above the potline's median cost the
most over the days asked for, in kWh and in money at the plant's tariff; and which crews'
and cells' anode changes take longest to settle.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOP = 10
"""Cells listed: the ones worth a visit this week."""
BAR_W, BAR_H, LABEL_W = 420, 18, 150

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Savings:
    """What the section shows, as read from the database."""

    cells: Rows  # per potline and cell: the days' energy excess and mean voltage excess
    changes: Rows  # anode changes with their settling
    tariff_cny_per_kwh: float


def read(query: Callable[[str], Rows], span: str, tariff_cny_per_kwh: float) -> Savings:
    """The days' ``cell_opportunity`` sums per cell and the changes' settling."""
    cells = query(
        'SELECT sum("energy_excess_kwh") AS "energy_excess_kwh", '
        'mean("voltage_excess_mv") AS "excess_mv", count("energy_excess_kwh") AS "days" '
        f'FROM "cell_opportunity" WHERE "period" = \'day\' AND {span} '
        'GROUP BY "potline", "cell"'
    )
    changes = query(
        'SELECT "settle_min", "settled", "crew" FROM "anode_change" '
        f'WHERE "settle_min" >= 0 AND {span} GROUP BY "potline", "cell"'
    )
    return Savings(cells, changes, tariff_cny_per_kwh)


def render(s: Savings) -> str:
    """The section's HTML: the top cells' table and bars, the league by crew and by cell."""
    top = sorted(s.cells, key=lambda r: -(r.get("energy_excess_kwh") or 0.0))[:TOP]
    rows = "".join(
        f"<tr><td>{k}</td><td>{_text(r['potline'])}</td><td>{_text(r['cell'])}</td>"
        f"<td>{r.get('days', 0)}</td><td>{number(r.get('excess_mv'), 1)}</td>"
        f"<td>{number(r.get('energy_excess_kwh'))}</td>"
        f"<td>{number((r.get('energy_excess_kwh') or 0.0) * s.tariff_cny_per_kwh)}</td></tr>"
        for k, r in enumerate(top, start=1)
    )
    costs = [
        (f"{r['cell']}", (r.get("energy_excess_kwh") or 0.0) * s.tariff_cny_per_kwh) for r in top
    ]
    crews = league(s.changes, "crew")
    cells = league(s.changes, "cell")[:TOP]
    return f"""<h2>Where the savings are: cells above their potline's median voltage</h2>
<p>The excess over the days asked for, at the tariff of {s.tariff_cny_per_kwh:g} CNY/kWh.</p>
{_bars(costs, "excess", "CNY")}
<table id="excess"><tr><th>#</th><th>potline</th><th>cell</th><th>days</th>
<th>mean excess mV</th><th>energy excess kWh</th><th>cost CNY</th></tr>{rows}</table>
<h2>Anode changes: the league by settling time</h2>
{_bars([(c["name"], c["mean"]) for c in crews], "crew", "min")}
{_league_table("crews", "crew", crews)}{_league_table("cells", "cell", cells)}
"""


def league(changes: Rows, by: str) -> list[dict[str, Any]]:
    """Changes, mean and worst settling minutes and unsettled ones per crew (or cell).

    Slowest first: the league is read from the top. Changes without a crew are "(none)".
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in changes:
        groups.setdefault(str(c.get(by) or "(none)"), []).append(c)
    out = [
        {
            "name": name,
            "changes": len(g),
            "mean": sum(c["settle_min"] for c in g) / len(g),
            "max": max(c["settle_min"] for c in g),
            "unsettled": sum(1 for c in g if c.get("settled") is False),
        }
        for name, g in groups.items()
    ]
    return sorted(out, key=lambda r: (-r["mean"], r["name"]))


def _league_table(table_id: str, by: str, rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{_text(r['name'])}</td><td>{r['changes']}</td><td>{number(r['mean'], 1)}</td>"
        f"<td>{number(r['max'])}</td><td>{r['unsettled']}</td></tr>"
        for r in rows
    )
    return (
        f'<table id="{table_id}"><tr><th>{by}</th><th>changes</th><th>mean settle min</th>'
        f"<th>worst min</th><th>unsettled</th></tr>{body}</table>"
    )


def _bars(values: list[tuple[str, float]], kind: str, unit: str) -> str:
    """Horizontal bars on one scale, longest for the largest value; each titled."""
    if not values:
        return "<p>none</p>"
    most = max(v for _, v in values) or 1.0
    bars = "".join(
        f'<text x="0" y="{k * (BAR_H + 4) + 13}" font-size="12">{_text(name)}</text>'
        f'<rect class="{kind}" x="{LABEL_W}" y="{k * (BAR_H + 4)}" '
        f'width="{BAR_W * max(v, 0.0) / most:.2f}" height="{BAR_H}" fill="#c0504d">'
        f"<title>{_text(name)}: {number(v)} {unit}</title></rect>"
        for k, (name, v) in enumerate(values)
    )
    height = len(values) * (BAR_H + 4)
    return f'<svg width="{LABEL_W + BAR_W}" height="{height}">{bars}</svg>'


def number(x: float | None, digits: int = 0) -> str:
    """A figure with thousands separated, or nothing for a value that is not there."""
    return "" if x is None else f"{x:,.{digits}f}"


def _text(x: object) -> str:
    return html.escape(str(x))
