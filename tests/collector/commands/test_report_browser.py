"""The report, rendered by a real headless Chromium (Debian's), shows its figures.

The report is written by ``cellmon report`` from points put in a real InfluxDB 1.x; a copy
gets a script that measures, in the browser's own layout, the bars of the savings split,
the goal line and the anode-cycle histogram, and the CE table; Chromium's DOM dump holds
the measurements.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.sinks.influx_v1 import InfluxV1Sink
from tests.collector.commands.test_report import report
from tests.harness import write_config
from tests.servers import InfluxV1

pytestmark = pytest.mark.integration

NS = 1_000_000_000
DAY1 = int(datetime(2024, 2, 29, 16, tzinfo=UTC).timestamp()) * NS  # local 2024-03-01
DAY2 = DAY1 + 86_400 * NS
MONTH = DAY1  # March 2024 starts with the first day
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MEASURE = """
<script>
const box = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
const all = (s) => [...document.querySelectorAll(s)];
const out = {
  voltage: all("#split rect.voltage").map(box),
  ce: all("#split rect.CE").map(box),
  goal: all("#split line.goal").map(box),
  cycles: all("rect.cycle").map((e) => [e.querySelector("title").textContent, ...box(e)]),
  ce_rows: all("#ce tr").slice(1).map((r) => [...r.cells].map((c) => c.textContent)),
};
const pre = document.createElement("pre");
pre.id = "measured";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>
"""


def points() -> bytes:
    day = "sec_potline,potline=P1,period=day"
    common = "target_kwh_per_t=13350,baseline_kwh_per_t=13450,goal_kwh_per_t=100"
    lines = [
        f"{day} sec_kwh_per_t=13380,savings_kwh_per_t=70,savings_voltage_kwh_per_t=50,"
        f"savings_ce_kwh_per_t=20,{common} {DAY1}",
        f"{day} sec_kwh_per_t=13470,savings_kwh_per_t=-20,savings_voltage_kwh_per_t=10,"
        f"savings_ce_kwh_per_t=-30,{common} {DAY2}",
        "sec_potline,potline=P1,period=month sec_kwh_per_t=13425,ce_configured_pct=92.5,"
        f'ce_measured_pct=93.1,ce_basis="measured" {MONTH}',
        f"anode_change,potline=P1,cell=C1,anode=3,block=590 cycle_days=30.9 {DAY1 + NS}",
        f"anode_change,potline=P1,cell=C1,anode=4,block=590 cycle_days=31.2 {DAY1 + 2 * NS}",
        f"anode_change,potline=P1,cell=C2,anode=5,block=590 cycle_days=29.1 {DAY2 + NS}",
    ]
    return "\n".join(lines).encode() + b"\n"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_rendered_report_shows_the_split_the_goal_and_the_cycles(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    measured = report_measured(tmp_path, influx_v1, influx_db, points(), MEASURE)

    # day 1: 50 + 20 up; day 2: 10 up and 30 down; one scale for all, so heights are ratios
    (v1, v2), (c1, c2) = measured["voltage"], measured["ce"]
    assert v1[1] > 0
    assert c1[1] > 0
    assert v1[1] / v2[1] == pytest.approx(50 / 10, rel=0.02)
    assert c2[1] / c1[1] == pytest.approx(30 / 20, rel=0.02)
    (goal,) = measured["goal"]  # the 100 kWh/t line, drawn across
    assert goal[0] > 0
    # whole days from 29 to 31 (the target): 29.1 in 29, 30.9 and 31.2 in 31, none in 30
    heights = {title: h for title, _, h in measured["cycles"]}
    assert heights["29 d: 1"] > 0
    assert heights["31 d: 2"] == pytest.approx(2 * heights["29 d: 1"], rel=0.02)
    assert heights["30 d: 0"] == 0
    assert measured["ce_rows"] == [["2024-03", "P1", "13,425", "92.50", "93.10", "measured"]]


def report_measured(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str, lines: bytes, script: str
) -> dict:
    """Write the points, run ``cellmon report``, and measure its page with ``script``."""
    InfluxV1Sink(influx_v1.url, influx_db, None, timeout_s=10.0, gzip=True).write(lines)
    config = write_config(tmp_path, mqtt_port=1, influx_url=influx_v1.url, database=influx_db)
    out = tmp_path / "report.html"
    done = report(config, out)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "measured.html"
    page.write_text(out.read_text().replace("</body>", script + "</body>"))
    return rendered(page, tmp_path)


def rendered(page: Path, tmp_path: Path) -> dict:
    """The measurements the page's script made, from Chromium's dump of the DOM."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no measurements in the DOM; chromium said: {done.stderr[-2000:]}"
    text = found.group(1).replace("&quot;", '"').replace("&amp;", "&")
    return json.loads(text)


SAVINGS_MEASURE = """
<script>
const box = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
const all = (s) => [...document.querySelectorAll(s)];
const out = {
  excess: all("rect.excess").map((e) => [e.querySelector("title").textContent, ...box(e)]),
  crew: all("rect.crew").map((e) => [e.querySelector("title").textContent, ...box(e)]),
  cells: all("#excess tr").slice(1).map((r) => [...r.cells].map((c) => c.textContent)),
  crews: all("#crews tr").slice(1).map((r) => [...r.cells].map((c) => c.textContent)),
};
const pre = document.createElement("pre");
pre.id = "measured";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>
"""


def savings_points() -> bytes:
    day = "cell_opportunity,potline=P1,period=day"
    lines = [
        f"{day},cell=C1 energy_excess_kwh=300,voltage_excess_mv=40 {DAY1}",
        f"{day},cell=C1 energy_excess_kwh=500,voltage_excess_mv=60 {DAY2}",
        f"{day},cell=C2 energy_excess_kwh=200,voltage_excess_mv=25 {DAY1}",
        f"{day},cell=C3 energy_excess_kwh=0,voltage_excess_mv=-30 {DAY1}",
        # a month point is not a day: left out of the sums
        f"cell_opportunity,potline=P1,period=month,cell=C2 energy_excess_kwh=9999 {MONTH}",
        f'anode_change,potline=P1,cell=C1,anode=3,block=590 settle_min=30,settled=true,crew="A" '
        f"{DAY1 + NS}",
        f'anode_change,potline=P1,cell=C2,anode=4,block=590 settle_min=90,settled=true,crew="A" '
        f"{DAY1 + 2 * NS}",
        f'anode_change,potline=P1,cell=C3,anode=5,block=590 settle_min=480,settled=false,crew="D" '
        f"{DAY2 + NS}",
        f'anode_change,potline=P1,cell=C1,anode=6,block=590 settle_min=120,settled=true,crew="D" '
        f"{DAY2 + 2 * NS}",
    ]
    return "\n".join(lines).encode() + b"\n"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_rendered_report_ranks_the_cells_and_the_crews(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    measured = report_measured(tmp_path, influx_v1, influx_db, savings_points(), SAVINGS_MEASURE)

    # C1: 300 + 500 = 800 kWh over two days, mean excess 50 mV, 800 × 0.38 = 304 CNY;
    # C2: 200 kWh, 76 CNY (its month point is not a day); C3: none
    assert measured["cells"] == [
        ["1", "P1", "C1", "2", "50.0", "800", "304"],
        ["2", "P1", "C2", "1", "25.0", "200", "76"],
        ["3", "P1", "C3", "1", "-30.0", "0", "0"],
    ]
    bars = {title: w for title, w, _ in measured["excess"]}
    assert bars["C1: 304 CNY"] == pytest.approx(4 * bars["C2: 76 CNY"], rel=0.02)
    assert bars["C3: 0 CNY"] == 0
    # crew D: (480 + 120) / 2 = 300 min, worst 480, one unsettled; crew A: (30 + 90) / 2 = 60
    assert measured["crews"] == [["D", "2", "300.0", "480", "1"], ["A", "2", "60.0", "90", "0"]]
    crews = {title: w for title, w, _ in measured["crew"]}
    assert crews["D: 300 min"] == pytest.approx(5 * crews["A: 60 min"], rel=0.02)
