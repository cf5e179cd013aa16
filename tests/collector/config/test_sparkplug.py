"""The ``sparkplug`` inputs of the rules: the shipped example loads, mistakes point to lines."""

from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.source.sparkplug.naming import compile_input
from collector.source.sparkplug.topics import parse
from tests.collector.config.config_files import MINIMAL, issues_of, write

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config" / "examples" / "sparkplug.yaml"


def test_the_example_loads_and_names_cells_as_it_says(workdir: Path) -> None:
    config = MINIMAL + "    - id: L2\n      baseline_sec_kwh_per_t: 13450\n"
    cfg = load_config(write(workdir, config, {"sparkplug.yaml": EXAMPLE.read_text()}))
    gateways, line2 = (compile_input(r) for r in cfg.rules.sparkplug)
    topic = parse("spBv1.0/P1/DDATA/P1-S01/C017")
    assert topic is not None
    assert gateways.reads(topic)
    names = gateways.names(topic, "C017", "Voltage")
    assert (names.potline, names.cell, names.metric) == ("P1", "C017", "Voltage")
    node = parse("spBv1.0/Plant/NDATA/L2")
    assert node is not None
    assert line2.reads(node)
    assert not line2.reads(parse("spBv1.0/Plant/NDATA/L3"))  # type: ignore[arg-type]
    names = line2.names(node, None, "Pot117/Voltage")
    assert (names.potline, names.cell, names.metric) == ("L2", "117", "Voltage")
    assert line2.samples.mapping.fields[1].convert is not None
    assert line2.samples.mapping.fields[1].convert(300_000_000.0) == pytest.approx(300.0)


def test_the_docs_show_the_example_as_it_is() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text()
    assert EXAMPLE.read_text() in docs


SPARKPLUG = """\
sparkplug:
  - name: gw
    potline: group
    cell: {cell}
    metrics:
      cell_voltage_v: Voltage
{current}"""


@pytest.mark.parametrize(
    ("cell", "current", "expected"),
    [
        (
            "group",
            "      line_current_ka: LineCurrent\n",
            "rules/default.yaml:4: sparkplug[0].cell.from: a group holds a potline, not one cell",
        ),
        (
            "device",
            "",
            "rules/default.yaml:5: sparkplug[0].metrics: needs cell_voltage_v and "
            "line_current_ka: a sample has both",
        ),
        (
            "device",
            "      line_current_ka: {name: LineCurrent, unit: MA}\n",
            "rules/default.yaml:7: sparkplug[0].metrics.line_current_ka.unit: unknown unit 'MA' "
            "for line_current_ka: one of kA, A; did you mean 'A'?",
        ),
        (
            "{from: device, pattern: 'C(\\d+)(x)'}",
            "      line_current_ka: LineCurrent\n",
            "rules/default.yaml:4: sparkplug[0].cell.pattern: has 2 groups; the id is the whole "
            "match or its one group",
        ),
        (
            "pot",
            "      line_current_ka: LineCurrent\n",
            "rules/default.yaml:4: sparkplug[0].cell.from: must be 'group', 'edge_node', "
            "'device' or 'metric_prefix', got 'pot'",
        ),
    ],
    ids=["cell-from-group", "no-current", "unknown-unit", "two-groups", "unknown-place"],
)
def test_mistakes_are_reported_at_their_line(
    workdir: Path, cell: str, current: str, expected: str
) -> None:
    rules = {"default.yaml": SPARKPLUG.format(cell=cell, current=current)}
    assert expected in issues_of(write(workdir, MINIMAL, rules))
