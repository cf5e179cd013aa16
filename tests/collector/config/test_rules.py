"""The rules files: every error at the rule's own file and line, and what valid rules mean."""

import re
from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.config.models import PotlineConfig, Targets
from collector.config.rules import AlarmRule
from collector.config.yamlsource import ConfigError
from processors.rules.expression_syntax import CELL_CONSTANTS
from tests.collector.config.config_files import MINIMAL, RULES, write

REPO = Path(__file__).resolve().parents[3]
SHIPPED = load_config(REPO / "config" / "cellmon.yaml")


# Errors in the rules files point to the rules file and its line.

MAPPED = """\
inputs:
  - name: pots
    topic: plant/{{potline}}/{{cell}}/data
    kind: telemetry
    fields:
{fields}"""

RULES_ERRORS = [
    (
        "topic-without-cell",
        {"default.yaml": "inputs:\n  - {name: t, topic: 'smelter/{potline}/t', kind: event}\n"},
        "rules/default.yaml:2: inputs[0].topic: 'smelter/{potline}/t' lacks {cell} as a whole "
        "level, e.g. 'smelter/{potline}/{cell}/telemetry'; or name the payload key that holds "
        "it under fields (cell: <key>)",
    ),
    (
        "potline-twice",
        {
            "default.yaml": """\
inputs:
  - name: t
    topic: smelter/{potline}/{potline}/{cell}
    kind: telemetry
"""
        },
        "rules/default.yaml:3: inputs[0].topic: 'smelter/{potline}/{potline}/{cell}' "
        "has {potline} 2 times; it must appear once",
    ),
    (
        "placeholder-inside-level",
        {"default.yaml": "inputs:\n  - {name: t, topic: 'pl-{potline}/{cell}', kind: event}\n"},
        "rules/default.yaml:2: inputs[0].topic: 'pl-{potline}/{cell}' has level 'pl-{potline}': "
        "only {potline} and {cell} may be placeholders, each a whole level",
    ),
    (
        "plus-wildcard",
        {"default.yaml": "inputs:\n  - {name: t, topic: '+/{potline}/{cell}', kind: event}\n"},
        "rules/default.yaml:2: inputs[0].topic: '+/{potline}/{cell}' has a wildcard in level "
        "'+': {potline} and {cell} already match one level each; '+' and '#' are not allowed",
    ),
    (
        "hash-wildcard",
        {"default.yaml": "inputs:\n  - {name: t, topic: 's/{potline}/{cell}/#', kind: event}\n"},
        "rules/default.yaml:2: inputs[0].topic: 's/{potline}/{cell}/#' has a wildcard in level "
        "'#': {potline} and {cell} already match one level each; '+' and '#' are not allowed",
    ),
    (
        "unknown-placeholder",
        {"default.yaml": "inputs:\n  - {name: t, topic: '{potline}/{cell}/{kind}', kind: event}\n"},
        "rules/default.yaml:2: inputs[0].topic: '{potline}/{cell}/{kind}' has level '{kind}': "
        "only {potline} and {cell} may be placeholders, each a whole level",
    ),
    (
        "kind-and-qos",
        {
            "default.yaml": """\
inputs:
  - name: t
    topic: smelter/{potline}/{cell}/telemetry
    kind: samples
    qos: 3
"""
        },
        "rules/default.yaml:4: inputs[0].kind: must be 'telemetry' or 'event', got 'samples'\n"
        "rules/default.yaml:5: inputs[0].qos: must be 0, 1 or 2, got 3",
    ),
    (
        "typo-in-rule",
        {
            "default.yaml": """\
inputs:
  - name: t
    topc: smelter/{potline}/{cell}/telemetry
    kind: telemetry
"""
        },
        "rules/default.yaml:2: inputs[0].topic: missing required key\n"
        "rules/default.yaml:3: inputs[0].topc: unknown key; did you mean 'topic'?",
    ),
    (
        "typo-in-list-name",
        {"default.yaml": RULES, "extra.yaml": "input: []\n"},
        "rules/extra.yaml:1: input: unknown key; did you mean 'inputs'?",
    ),
    (
        "duplicate-name-across-files",
        {
            "a.yaml": RULES,
            "b.yaml": """\
inputs:
  - name: telemetry
    topic: plant2/{potline}/{cell}/telemetry
    kind: telemetry
""",
        },
        "rules/b.yaml:2: inputs[0].name: duplicate name 'telemetry': "
        "names are unique across all rules files",
    ),
    (
        "no-rules-files",
        {},
        "rules/*.yaml:0: inputs: no input rules (inputs or sparkplug): one is needed",
    ),
    (
        "no-inputs",
        {"default.yaml": "inputs: []\n"},
        "rules/*.yaml:0: inputs: no input rules (inputs or sparkplug): one is needed",
    ),
    (
        "yml-file-is-not-read",
        {"default.yaml": RULES, "alarms.yml": "inputs: []\n"},
        "rules/alarms.yml:0: file: not read: rules files end in .yaml",
    ),
    (
        "mapping-unknown-unit",
        {"default.yaml": MAPPED.format(fields="      cell_voltage_v: {key: U, unit: mv}\n")},
        "rules/default.yaml:6: inputs[0].fields.cell_voltage_v.unit: unknown unit 'mv' for "
        "cell_voltage_v: one of V, mV; did you mean 'mV'?",
    ),
    (
        "mapping-unit-of-unknown-field",
        {"default.yaml": MAPPED.format(fields="      pressure_kpa: {key: p, unit: bar}\n")},
        "rules/default.yaml:6: inputs[0].fields.pressure_kpa.unit: no units are known for "
        "'pressure_kpa': use scale and offset",
    ),
    (
        "mapping-unit-and-scale",
        {
            "default.yaml": MAPPED.format(
                fields="      line_current_ka: {key: I, unit: A, scale: 2}\n"
            )
        },
        "rules/default.yaml:6: inputs[0].fields.line_current_ka.unit: give a unit or "
        "scale/offset, not both",
    ),
    (
        "mapping-scaled-ts",
        {"default.yaml": MAPPED.format(fields="      ts: {key: t, scale: 1000}\n")},
        "rules/default.yaml:6: inputs[0].fields.ts.scale: ts is not scaled; give its unit",
    ),
    (
        "mapping-one-key-two-fields",
        {"default.yaml": MAPPED.format(fields="      cell_voltage_v: U\n      bath_temp_c: U\n")},
        "rules/default.yaml:7: inputs[0].fields.bath_temp_c.key: key 'U' already feeds "
        "'cell_voltage_v'",
    ),
    (
        "mapping-bad-target",
        {"default.yaml": MAPPED.format(fields="      voltage_v: U\n")},
        "rules/default.yaml:6: inputs[0].fields.voltage_v: 'voltage_v' is not a field name; "
        "telemetry fields: ts, potline, cell, cell_voltage_v, line_current_ka, bath_temp_c, "
        "noise_uohm, "
        "or a new name for a pass-through key",
    ),
    (
        "mapping-zero-scale",
        {"default.yaml": MAPPED.format(fields="      noise_uohm: {key: n, scale: 0}\n")},
        "rules/default.yaml:6: inputs[0].fields.noise_uohm.scale: must not be 0: every value "
        "would read 0",
    ),
    (
        "mapping-key-with-space",
        {"default.yaml": MAPPED.format(fields="      cell_voltage_v: cell voltage\n")},
        "rules/default.yaml:6: inputs[0].fields.cell_voltage_v.key: must be a payload key, or a "
        "path of keys separated by '.' (e.g. 'meas.U_mV'), without spaces, got 'cell voltage'",
    ),
    (
        "mapping-types-on-telemetry",
        {"default.yaml": MAPPED.format(fields="      ts: t\n") + "    types: {AC: anode_change}\n"},
        "rules/default.yaml:7: inputs[0].types: types name event types: only for kind: event",
    ),
    (
        "mapping-cell-twice",
        {"default.yaml": MAPPED.format(fields="      cell: pot\n")},
        "rules/default.yaml:6: inputs[0].fields.cell: the cell is already the topic's {cell}: "
        "remove one of the two",
    ),
    (
        "mapping-cell-with-unit",
        {
            "default.yaml": "inputs:\n  - name: gw\n    topic: plant/{potline}/gw\n"
            "    kind: telemetry\n    fields:\n      cell: {key: pot, scale: 2}\n"
        },
        "rules/default.yaml:6: inputs[0].fields.cell.scale: cell is a name: it takes no unit "
        "or scale",
    ),
    (
        "rules-syntax-error",
        {"default.yaml": "inputs:\n  - name: t\n   kind: event\n"},
        "rules/default.yaml:3: yaml: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection at line 2); check the indentation",
    ),
]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [case[1:] for case in RULES_ERRORS],
    ids=[case[0] for case in RULES_ERRORS],
)
def test_rules_error(workdir: Path, rules: dict[str, str], expected: str) -> None:
    path = write(workdir, MINIMAL, rules)
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config(path)


def test_rules_files_merge_in_name_order(workdir: Path) -> None:
    events = "inputs:\n  - {name: events, topic: 's/{potline}/{cell}/e', kind: event, qos: 0}\n"
    write(workdir, MINIMAL, {"b.yaml": events, "a.yaml": RULES})
    inputs = load_config("cellmon.yaml").rules.inputs
    assert [(r.name, r.topic, r.kind, r.qos) for r in inputs] == [
        ("telemetry", "smelter/{potline}/{cell}/telemetry", "telemetry", 1),
        ("events", "s/{potline}/{cell}/e", "event", 0),
    ]


@pytest.mark.parametrize(
    "topic",
    ["smelter/{potline}/{cell}/telemetry", "{cell}/{potline}", "/legacy/{potline}/{cell}"],
    ids=["default", "reversed", "leading-slash"],
)
def test_valid_topic_template(workdir: Path, topic: str) -> None:
    write(
        workdir,
        MINIMAL,
        {"default.yaml": f"inputs:\n  - {{name: t, topic: '{topic}', kind: event}}\n"},
    )
    assert load_config("cellmon.yaml").rules.inputs[0].topic == topic


# Derived fields and alarms: every error at the rule's own file and line.

DERIVED_ERRORS = [
    (
        "attribute-access",
        "derived:\n  - name: x\n    expr: cell_voltage_v.__class__\n",
        "rules/more.yaml:3: derived[0].expr: attribute access is not allowed: "
        "cell_voltage_v.__class__ (expressions use names, numbers, + - * / **, comparisons, "
        "and/or/not and the functions abs, exp, log, max, min, round, sqrt)",
    ),
    (
        "import",
        "derived:\n  - name: x\n    expr: \"__import__('os')\"\n",
        "rules/more.yaml:3: derived[0].expr: unknown function '__import__'; "
        "the functions are abs, exp, log, max, min, round, sqrt",
    ),
    (
        "import-statement",
        "derived:\n  - {name: x, expr: import os}\n",
        "rules/more.yaml:2: derived[0].expr: a statement, not an expression: "
        "import, assignment and the like are not allowed",
    ),
    (
        "huge-exponent",
        "derived:\n  - name: x\n    expr: 10 ** 10 ** 10\n",
        "rules/more.yaml:3: derived[0].expr: the exponent must be a number from -100 to 100 "
        "written in the expression, e.g. x ** 2 or x ** 0.5; got ** 10 ** 10",
    ),
    (
        "unknown-name",
        "derived:\n  - name: x\n    expr: (cell_voltage - 1.65) / line_current_ka\n",
        "rules/more.yaml:3: derived[0].expr: unknown name 'cell_voltage'; "
        "did you mean 'cell_voltage_v'?",
    ),
    (
        "unknown-setting",
        "derived:\n  - name: x\n    expr: cell_voltage_v / current_efficency\n",
        "rules/more.yaml:3: derived[0].expr: unknown name 'current_efficency'; "
        "did you mean 'current_efficiency'?",
    ),
    (
        "unknown-name-far-from-any",
        "derived:\n  - name: x\n    expr: zz * 2\n",
        "rules/more.yaml:3: derived[0].expr: unknown name 'zz': expressions may use the "
        "sample's fields (cell_voltage_v, line_current_ka, bath_temp_c, noise_uohm), the "
        "potline's settings (current_efficiency, baseline_sec_kwh_per_t, anodes_per_cell, "
        "sec_savings_kwh_per_t, anode_cycle_days, anode_cycle_tolerance_days, "
        "anode_effect_threshold_v, tap_cycle_max_h, anode_settle_band_mv, "
        "anode_settle_max_min), the derived fields above this one, and pass-through "
        "payload keys listed under 'fields'",
    ),
    (
        "syntax",
        "derived:\n  - name: x\n    expr: (cell_voltage_v - 1.65\n",
        "rules/more.yaml:3: derived[0].expr: syntax error at column 1: '(' was never closed",
    ),
    (
        "string",
        "derived:\n  - name: x\n    expr: \"'4.2'\"\n",
        "rules/more.yaml:3: derived[0].expr: strings are not allowed: expressions use names, "
        "numbers, + - * / **, comparisons, and/or/not and the functions abs, exp, log, max, "
        "min, round, sqrt",
    ),
    (
        "number-not-text",
        "derived:\n  - name: x\n    expr: 1.65\n",
        "rules/more.yaml:3: derived[0].expr: expected a string, got 1.65 "
        '(write it in quotes: "1.65")',
    ),
    (
        "derived-after",
        "derived:\n  - {name: x, expr: y * 2}\n  - {name: y, expr: cell_voltage_v}\n",
        "rules/more.yaml:2: derived[0].expr: 'y' is derived after this rule: "
        "move its rule above this one",
    ),
    (
        "reads-itself",
        "derived:\n  - {name: x, expr: x + 1}\n",
        "rules/more.yaml:2: derived[0].expr: 'x' reads itself: an expression may read only "
        "earlier fields",
    ),
    (
        "contract-field-name",
        "derived:\n  - name: bath_temp_c\n    expr: cell_voltage_v * 2\n",
        "rules/more.yaml:2: derived[0].name: 'bath_temp_c' is a field of the contract: "
        "a derived field needs a new name",
    ),
    (
        "setting-name",
        "derived:\n  - name: current_efficiency\n    expr: cell_voltage_v * 2\n",
        "rules/more.yaml:2: derived[0].name: 'current_efficiency' is a setting of the potline: "
        "a derived field needs a new name",
    ),
    (
        "not-an-identifier",
        "derived:\n  - name: r-uohm\n    expr: cell_voltage_v * 2\n",
        "rules/more.yaml:2: derived[0].name: must be a letter then up to 63 letters, digits or "
        "'_' (it is a field name and a name in expressions), got 'r-uohm'",
    ),
    (
        "keyword-name",
        "derived:\n  - name: lambda\n    expr: cell_voltage_v * 2\n",
        "rules/more.yaml:2: derived[0].name: must be a letter then up to 63 letters, digits or "
        "'_' (it is a field name and a name in expressions), got 'lambda'",
    ),
    (
        "duplicate-across-files",
        "derived:\n  - name: r\n    expr: cell_voltage_v * 2\n",
        "rules/more.yaml:2: derived[0].name: duplicate name 'r': "
        "names are unique across all rules files",
    ),
    (
        "unknown-key",
        "derived:\n  - name: x\n    exp: cell_voltage_v * 2\n",
        "rules/more.yaml:2: derived[0].expr: missing required key\n"
        "rules/more.yaml:3: derived[0].exp: unknown key; did you mean 'expr'?",
    ),
    (
        "empty-potlines",
        "derived:\n  - {name: x, expr: cell_voltage_v, potlines: []}\n",
        "rules/more.yaml:2: derived[0].potlines: must not be empty",
    ),
    (
        "alarm-unknown-field",
        "alarms:\n  - name: x\n    field: cell_voltage\n    above: 4.5\n",
        "rules/more.yaml:3: alarms[0].field: unknown field 'cell_voltage'; "
        "did you mean 'cell_voltage_v'?",
    ),
    (
        "alarm-pass-through-not-listed",
        "alarms:\n  - name: x\n    field: feed_kg\n    above: 4.5\n",
        "rules/more.yaml:3: alarms[0].field: unknown field 'feed_kg': an alarm watches one of "
        "cell_voltage_v, line_current_ka, bath_temp_c, noise_uohm, a derived field, or a "
        "pass-through payload key listed under 'fields'",
    ),
    (
        "alarm-two-limits",
        "alarms:\n  - name: x\n    field: cell_voltage_v\n    above: 4.5\n    below: 3.8\n",
        "rules/more.yaml:5: alarms[0].below: give only one of above, below, outside "
        "(found above and below)",
    ),
    (
        "alarm-no-limit",
        "alarms:\n  - name: x\n    field: cell_voltage_v\n    hold_s: 60\n",
        "rules/more.yaml:3: alarms[0].field: no limit: give above, below or outside: [low, high]",
    ),
    (
        "alarm-nothing-watched",
        "alarms:\n  - name: x\n    above: 4.5\n",
        "rules/more.yaml:2: alarms[0].field: missing required key: an alarm watches a field "
        "(with above, below or outside), unless it is a stale alarm (stale_s)",
    ),
    (
        "alarm-band-reversed",
        "alarms:\n  - name: x\n    field: bath_temp_c\n    outside: [975, 940]\n",
        "rules/more.yaml:4: alarms[0].outside: must be [low, high] with low < high, "
        "e.g. [940, 975], got [975, 940]",
    ),
    (
        "alarm-band-one-value",
        "alarms:\n  - name: x\n    field: bath_temp_c\n    outside: [940]\n",
        "rules/more.yaml:4: alarms[0].outside: must be [low, high] with low < high, "
        "e.g. [940, 975], got [940]",
    ),
    (
        "alarm-negative-hold",
        "alarms:\n  - name: x\n    field: cell_voltage_v\n    above: 4.5\n    hold_s: -5\n",
        "rules/more.yaml:5: alarms[0].hold_s: must be >= 0, got -5",
    ),
    (
        "stale-with-field",
        "alarms:\n  - name: x\n    stale_s: 60\n    field: cell_voltage_v\n    hold_s: 10\n",
        "rules/more.yaml:4: alarms[0].field: a stale alarm (stale_s) watches no field: "
        "remove 'field'\n"
        "rules/more.yaml:5: alarms[0].hold_s: a stale alarm (stale_s) watches no field: "
        "remove 'hold_s'",
    ),
    (
        "stale-zero",
        "alarms:\n  - name: x\n    stale_s: 0\n",
        "rules/more.yaml:3: alarms[0].stale_s: must be > 0, got 0",
    ),
    (
        "severity",
        "alarms:\n  - name: x\n    stale_s: 60\n    severity: fatal\n",
        "rules/more.yaml:4: alarms[0].severity: must be 'info', 'warning' or 'critical', "
        "got 'fatal'",
    ),
    (
        "alarm-limit-unknown-setting",
        "alarms:\n  - name: x\n    field: cell_voltage_v\n    above: anode_effect_threshold\n",
        "rules/more.yaml:4: alarms[0].above: expected a number or a potline setting "
        "(current_efficiency, baseline_sec_kwh_per_t, anodes_per_cell, sec_savings_kwh_per_t, "
        "anode_cycle_days, anode_cycle_tolerance_days, anode_effect_threshold_v, "
        "tap_cycle_max_h, anode_settle_band_mv, anode_settle_max_min), got "
        "'anode_effect_threshold'; did you mean 'anode_effect_threshold_v'?",
    ),
    (
        "alarm-name-as-tag",
        "alarms:\n  - name: high voltage\n    stale_s: 60\n",
        "rules/more.yaml:2: alarms[0].name: must be 1 to 32 of A-Z a-z 0-9 _ - (it is a topic "
        "level and a tag), got 'high voltage'",
    ),
]

BASE_RULES = RULES + "derived:\n  - name: r\n    expr: cell_voltage_v * 2\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in DERIVED_ERRORS],
    ids=[case[0] for case in DERIVED_ERRORS],
)
def test_derived_and_alarm_rule_error(workdir: Path, text: str, expected: str) -> None:
    write(workdir, MINIMAL, {"default.yaml": BASE_RULES, "more.yaml": text})
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config("cellmon.yaml")


def test_rules_read_what_earlier_files_derive_and_pass_through_fields(workdir: Path) -> None:
    more = """\
derived:
  - name: r2
    expr: r * 2 + feed_kg / line_current_ka
    fields: [feed_kg]
alarms:
  - {name: r2_high, field: r2, above: 10, potlines: [P1], cells: [A01, A02]}
  - {name: feed_low, field: feed_kg, below: 1, fields: [feed_kg], severity: info}
"""
    write(workdir, MINIMAL, {"default.yaml": BASE_RULES, "more.yaml": more})
    rules = load_config("cellmon.yaml").rules
    assert [(d.name, d.fields) for d in rules.derived] == [("r", []), ("r2", ["feed_kg"])]
    assert rules.alarms[0] == AlarmRule(
        name="r2_high", field="r2", above=10.0, potlines=["P1"], cells=["A01", "A02"]
    )
    assert (rules.alarms[1].severity, rules.alarms[1].hold_s) == ("info", 0.0)


def test_shipped_derived_field_and_alarms() -> None:
    derived = SHIPPED.rules.derived
    assert [(d.name, d.expr) for d in derived] == [
        ("resistance_uohm", "(cell_voltage_v - 1.65) / line_current_ka * 1000")
    ]
    alarms = {
        a.name: (a.field, a.above, a.below, a.outside, a.hold_s, a.stale_s, a.severity)
        for a in SHIPPED.rules.alarms
    }
    assert alarms == {
        "high_voltage": ("cell_voltage_v", 4.5, None, None, 600.0, None, "warning"),
        "low_voltage": ("cell_voltage_v", None, 3.8, None, 0.0, None, "warning"),
        "anode_effect": (
            "cell_voltage_v",
            "anode_effect_threshold_v",
            None,
            None,
            0.0,
            None,
            "critical",
        ),
        "high_noise": ("noise_uohm", 25.0, None, None, 1800.0, None, "warning"),
        "bath_temperature": ("bath_temp_c", None, None, [940.0, 975.0], 0.0, None, "warning"),
        "no_data": (None, None, None, None, 0.0, 60.0, "critical"),
    }


def test_expression_settings_are_the_numeric_settings_of_a_potline() -> None:
    numeric = {
        name
        for model in (PotlineConfig, Targets)
        for name, field in model.model_fields.items()
        if field.annotation in (int, float)
    }
    assert set(CELL_CONSTANTS) == numeric
