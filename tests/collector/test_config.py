import re
from datetime import time
from pathlib import Path

import pytest

from collector.config import (
    Config,
    ConfigError,
    ConfigIssue,
    PotlineConfig,
    Targets,
    check,
    load_config,
    secret,
)
from collector.rules import AlarmRule
from processors.expressions import CELL_CONSTANTS

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
"""

RULES = """\
inputs:
  - name: telemetry
    topic: smelter/{potline}/{cell}/telemetry
    kind: telemetry
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Issues name files as given, so tests work in tmp_path with relative names."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    return tmp_path


def write(workdir: Path, config: str, rules: dict[str, str] | None = None) -> str:
    (workdir / "cellmon.yaml").write_text(config)
    for name, text in (rules if rules is not None else {"default.yaml": RULES}).items():
        (workdir / "rules" / name).write_text(text)
    return "cellmon.yaml"


def issues_of(path: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return [str(issue) for issue in err.value.issues]


# The shipped sample: it must load, and say what the contract says.

SHIPPED = load_config(REPO / "config" / "cellmon.yaml")


def value_at(cfg: Config, dotted: str) -> object:
    value: object = cfg
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)  # type: ignore[index]
    return value


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("mqtt.host", "127.0.0.1"),
        ("mqtt.port", 1883),
        ("mqtt.client_id", "cellmon-1"),
        ("mqtt.username_env", "MQTT_USERNAME"),
        ("mqtt.password_env", "MQTT_PASSWORD"),
        ("mqtt.tls", None),
        ("mqtt.keepalive_s", 30),
        ("mqtt.reconnect_max_s", 30.0),
        ("ingest.ack_batch", 20),
        ("ingest.ack_interval_ms", 5.0),
        ("ingest.max_payload_bytes", 262144),
        ("ingest.future_tolerance_s", 300.0),
        ("ingest.dedup_window_s", 3600.0),
        ("ingest.voltage_min_v", 0.0),
        ("ingest.voltage_max_v", 100.0),
        ("ingest.current_min_ka", 0.0),
        ("ingest.current_max_ka", 1000.0),
        ("ingest.dead_letter_max_bytes", 4096),
        ("influx.url", "http://127.0.0.1:8086"),
        ("influx.api", "v2"),
        ("influx.database", "cellmon"),
        ("influx.bucket", "cellmon"),
        ("influx.org", "smelter"),
        ("influx.token_env", "INFLUX_TOKEN"),
        ("influx.timeout_s", 10.0),
        ("influx.gzip", True),
        ("sink.type", "influx"),
        ("sink.path", "points.lp"),
        ("sink.batch_lines", 5000),
        ("sink.flush_interval_s", 1.0),
        ("sink.max_buffer_mib", 1024.0),
        ("sink.retry_max_s", 30.0),
        ("state_dir", "var/cellmon"),
        ("state_path", Path("var/cellmon")),
        ("metrics_interval_s", 10.0),
        ("instance", None),
        ("instance_name", "cellmon-1"),
        ("plant.timezone", "Asia/Shanghai"),
        ("plant.shifts", ["00:00", "08:00", "16:00"]),
        ("plant.shift_times", (time(0, 0), time(8, 0), time(16, 0))),
        ("plant.max_gap_s", 60.0),
        ("plant.tariff_cny_per_kwh", 0.38),
        ("plant.potlines.0.id", "P1"),
        ("plant.potlines.0.current_efficiency", 0.925),
        ("plant.potlines.0.baseline_sec_kwh_per_t", 13450.0),
        ("plant.potlines.0.anodes_per_cell", 40),
        ("targets.sec_savings_kwh_per_t", 100.0),
        ("targets.anode_cycle_days", 31.0),
        ("targets.anode_cycle_tolerance_days", 1.0),
        ("targets.anode_block", "590"),
        ("targets.anode_effect_threshold_v", 8.0),
        ("rules.inputs.0.topic", "smelter/{potline}/{cell}/telemetry"),
        ("rules.inputs.0.kind", "telemetry"),
        ("rules.inputs.0.qos", 1),
        ("rules.inputs.1.topic", "smelter/{potline}/{cell}/event"),
        ("rules.inputs.1.kind", "event"),
        ("rules.inputs.1.qos", 1),
    ],
    ids=lambda v: v if isinstance(v, str) and "/" not in v else None,
)
def test_shipped_config_has_contract_defaults(key: str, expected: object) -> None:
    assert value_at(SHIPPED, key) == expected


def test_shipped_config_passes_check() -> None:
    assert check(REPO / "config" / "cellmon.yaml") == []


def test_shipped_potline_has_no_overrides() -> None:
    assert SHIPPED.targets_for("P1") == SHIPPED.targets


# Errors in the config file: every one, with its line, worded for the engineer.


def test_typo_wrong_type_and_missing_key_are_reported_together(workdir: Path) -> None:
    path = write(
        workdir,
        """\
mqtt:
  host: broker.plant.local
  prot: 1883
plant:
  max_gap_s: abc
  potlines:
    - id: P1
      current_efficiency: 0.93
""",
    )
    assert issues_of(path) == [
        "cellmon.yaml:3: mqtt.prot: unknown key; did you mean 'port'?",
        "cellmon.yaml:5: plant.max_gap_s: expected a number, got 'abc'",
        "cellmon.yaml:7: plant.potlines[0].baseline_sec_kwh_per_t: missing required key",
    ]


CONFIG_ERRORS = [
    (
        "alert-topic-wildcard",
        MINIMAL + "alerts:\n  topic: cellmon/+/{cell}\n",
        "cellmon.yaml:6: alerts.topic: 'cellmon/+/{cell}' has level '+': levels are non-empty, "
        "without + or #, and placeholders ({potline}, {cell}, {rule}, {severity}) are whole "
        "levels",
    ),
    (
        "timezone",
        """\
plant:
  timezone: Europe/Pariss
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        "cellmon.yaml:2: plant.timezone: not a zoneinfo time zone key: 'Europe/Pariss'; "
        "did you mean 'Europe/Paris'?",
    ),
    (
        "timezone-no-match",
        """\
plant:
  timezone: Beijing
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        "cellmon.yaml:2: plant.timezone: not a zoneinfo time zone key: 'Beijing', "
        "e.g. 'Asia/Shanghai' or 'UTC'",
    ),
    (
        "shifts-not-increasing",
        """\
plant:
  shifts: ["00:00", "16:00", "08:00"]
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        "cellmon.yaml:2: plant.shifts[2]: must be after '16:00': shifts are strictly increasing",
    ),
    (
        "shift-unquoted",
        """\
plant:
  shifts: [00:00, 08:00, 16:00]
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        'cellmon.yaml:2: plant.shifts[2]: expected a time "HH:MM" in quotes, got the number 960 '
        "(YAML reads an unquoted 16:00 as 960)",
    ),
    (
        "shift-not-hhmm",
        """\
plant:
  shifts:
    - "06:00"
    - "18:60"
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        'cellmon.yaml:4: plant.shifts[1]: expected a time "HH:MM" from "00:00" to "23:59", '
        "got '18:60'",
    ),
    (
        "no-shifts",
        """\
plant:
  shifts: []
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        "cellmon.yaml:2: plant.shifts: must not be empty",
    ),
    (
        "duplicate-potline-id",
        """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
    - id: P1
      baseline_sec_kwh_per_t: 13300
""",
        "cellmon.yaml:5: plant.potlines[1].id: duplicate id, also potlines[0]",
    ),
    (
        "bad-potline-id",
        """\
plant:
  potlines:
    - id: Line 1
      baseline_sec_kwh_per_t: 13450
""",
        "cellmon.yaml:3: plant.potlines[0].id: must be 1 to 32 of A-Z a-z 0-9 _ - "
        "(it is a topic level and a tag), got 'Line 1'",
    ),
    (
        "no-potlines",
        """\
plant:
  potlines: []
""",
        "cellmon.yaml:2: plant.potlines: must not be empty",
    ),
    (
        "no-plant",
        """\
state_dir: /var/lib/cellmon
""",
        "cellmon.yaml:1: plant: missing required key",
    ),
    (
        "duplicate-yaml-key",
        """\
plant:
  max_gap_s: 60
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
  max_gap_s: 90
""",
        "cellmon.yaml:6: plant.max_gap_s: duplicate key, first at line 2: "
        "YAML would silently keep only the last",
    ),
    (
        "yaml-syntax",
        """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
  tariff_cny_per_kwh: 0.38: 0.40
""",
        "cellmon.yaml:5: yaml: mapping values are not allowed here; "
        "check the indentation, or quote a value with ': ' in it",
    ),
    (
        "yaml-unclosed-quote",
        """\
plant:
  timezone: "Asia/Shanghai
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        "cellmon.yaml:4: yaml: found unexpected end of stream "
        "(while scanning a quoted scalar at line 2)",
    ),
    (
        "yaml-tab",
        "plant:\n\tmax_gap_s: 60\n",
        "cellmon.yaml:2: yaml: found character '\\t' that cannot start any token; "
        "indent with spaces: YAML does not allow tabs",
    ),
    (
        "not-a-mapping",
        """\
- plant
""",
        "cellmon.yaml:1: (document): expected a mapping, got a list",
    ),
    (
        "two-bounds",
        """\
plant:
  potlines:
    - id: P1
      current_efficiency: 1.3
      baseline_sec_kwh_per_t: 13450
""",
        "cellmon.yaml:4: plant.potlines[0].current_efficiency: must be > 0 and <= 1, got 1.3",
    ),
    (
        "one-bound",
        """\
sink:
  batch_lines: 0
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: sink.batch_lines: must be >= 1, got 0",
    ),
    (
        "override-bound",
        """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
      targets: {anode_cycle_days: -30}
""",
        "cellmon.yaml:5: plant.potlines[0].targets.anode_cycle_days: must be > 0, got -30",
    ),
    (
        "unknown-override",
        """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
      targets:
        anode_cycle: 30
""",
        "cellmon.yaml:6: plant.potlines[0].targets.anode_cycle: unknown key; "
        "did you mean 'anode_cycle_days'?",
    ),
    (
        "unknown-section",
        """\
grafana: {}
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:1: grafana: unknown key; expected one of: mqtt, ingest, influx, sink, "
        "alerts, state_dir, metrics_interval_s, rules_check_s, instance, plant, targets, pfc, "
        "anode_response",
    ),
    (
        "literal",
        """\
influx:
  api: v3
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: influx.api: must be 'v1' or 'v2', got 'v3'",
    ),
    (
        "bool-for-number",
        """\
mqtt:
  port: yes
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: mqtt.port: expected a whole number, got true",
    ),
    (
        "fraction-for-integer",
        """\
ingest:
  ack_batch: 2.5
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: ingest.ack_batch: expected a whole number, got 2.5",
    ),
    (
        "empty-value",
        """\
metrics_interval_s:
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:1: metrics_interval_s: expected a number, got an empty value",
    ),
    (
        "not-finite",
        """\
plant:
  max_gap_s: .inf
  potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]
""",
        "cellmon.yaml:2: plant.max_gap_s: must be a finite number, got inf",
    ),
    (
        "number-for-string",
        """\
targets:
  anode_block: 590
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: targets.anode_block: expected a string, got 590 "
        '(write it in quotes: "590")',
    ),
    (
        "section-not-mapping",
        """\
mqtt: broker.plant.local
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:1: mqtt: expected a mapping, got 'broker.plant.local'",
    ),
    (
        "voltage-range",
        """\
ingest:
  voltage_min_v: 10
  voltage_max_v: 5
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:3: ingest.voltage_max_v: must be above voltage_min_v (10.0), got 5.0",
    ),
    (
        "url",
        """\
influx:
  url: 127.0.0.1:8086
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: influx.url: expected an http:// or https:// URL, got '127.0.0.1:8086'",
    ),
    (
        "secret-pasted-into-env-key",
        """\
mqtt:
  password_env: "hunter2 is my password"
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: mqtt.password_env: must be the name of an environment variable "
        "(letters, digits, '_'), never the secret itself",
    ),
    (
        "secret-number-not-echoed",
        """\
influx:
  token_env: 123456
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
""",
        "cellmon.yaml:2: influx.token_env: expected a string",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in CONFIG_ERRORS],
    ids=[case[0] for case in CONFIG_ERRORS],
)
def test_config_error(workdir: Path, text: str, expected: str) -> None:
    path = write(workdir, text)
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config(path)


def test_issue_str_is_file_line_key_message() -> None:
    issue = ConfigIssue("config/cellmon.yaml", 14, "plant.max_gap_s", "must be > 0, got -1")
    assert str(issue) == "config/cellmon.yaml:14: plant.max_gap_s: must be > 0, got -1"


def test_missing_config_file(workdir: Path) -> None:
    assert check("nope.yaml") == [
        ConfigIssue("nope.yaml", 0, "file", f"no such file (relative to {workdir})")
    ]


def test_config_and_rules_errors_come_in_one_pass(workdir: Path) -> None:
    path = write(
        workdir,
        """\
plant:
  potlines: [{id: P1, baseline_sec_kwh_per_t: -1}]
""",
        {"default.yaml": "inputs:\n  - {name: t, topic: 'a/{potline}', kind: telemetry}\n"},
    )
    assert issues_of(path) == [
        "cellmon.yaml:2: plant.potlines[0].baseline_sec_kwh_per_t: must be > 0, got -1",
        "rules/default.yaml:2: inputs[0].topic: 'a/{potline}' lacks {cell} as a whole level, "
        "e.g. 'smelter/{potline}/{cell}/telemetry'; or name the payload key that holds it "
        "under fields (cell: <key>)",
    ]


# YAML details that decide which line an issue names.


YAML_LINES = [
    (
        "duplicate-in-list-item",
        """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
      id: P2
""",
        "cellmon.yaml:5: plant.potlines[0].id: duplicate key, first at line 3: "
        "YAML would silently keep only the last",
    ),
    (
        "error-in-second-item",
        """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450

    - id: P2
      baseline_sec_kwh_per_t: 13450
      anodes_per_cell: 0
""",
        "cellmon.yaml:8: plant.potlines[1].anodes_per_cell: must be >= 1, got 0",
    ),
    (
        "error-in-merged-key-points-to-merging-mapping",
        """\
defaults: &line
  anodes_per_cell: 0
plant:
  potlines:
    - <<: *line
      id: P1
      baseline_sec_kwh_per_t: 13450
""",
        "cellmon.yaml:1: defaults: unknown key; expected one of: mqtt, ingest, influx, sink, "
        "alerts, state_dir, metrics_interval_s, rules_check_s, instance, plant, targets, pfc, "
        "anode_response\n"
        "cellmon.yaml:5: plant.potlines[0].anodes_per_cell: must be >= 1, got 0",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [case[1:] for case in YAML_LINES],
    ids=[case[0] for case in YAML_LINES],
)
def test_issue_line(workdir: Path, text: str, expected: str) -> None:
    path = write(workdir, text)
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config(path)


def test_merge_key_override_is_not_a_duplicate(workdir: Path) -> None:
    write(
        workdir,
        """\
plant:
  potlines:
    - &p1
      id: P1
      baseline_sec_kwh_per_t: 13450
    - <<: *p1
      id: P2
""",
    )
    assert [p.id for p in load_config("cellmon.yaml").plant.potlines] == ["P1", "P2"]


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
        "rules/*.yaml:0: inputs: no input rules: at least one is needed",
    ),
    (
        "no-inputs",
        {"default.yaml": "inputs: []\n"},
        "rules/*.yaml:0: inputs: no input rules: at least one is needed",
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


# Targets, lookups and secrets.

OVERRIDES = """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
      targets: {anode_cycle_days: 30, anode_block: "600"}
    - id: P2
      baseline_sec_kwh_per_t: 13300
targets:
  anode_cycle_days: 32
"""


@pytest.mark.parametrize(
    ("potline", "expected"),
    [
        (
            "P1",
            Targets(
                sec_savings_kwh_per_t=100.0,
                anode_cycle_days=30.0,
                anode_cycle_tolerance_days=1.0,
                anode_block="600",
                anode_effect_threshold_v=8.0,
            ),
        ),
        (
            "P2",
            Targets(
                sec_savings_kwh_per_t=100.0,
                anode_cycle_days=32.0,
                anode_cycle_tolerance_days=1.0,
                anode_block="590",
                anode_effect_threshold_v=8.0,
            ),
        ),
        (
            "P9",
            Targets(
                sec_savings_kwh_per_t=100.0,
                anode_cycle_days=32.0,
                anode_cycle_tolerance_days=1.0,
                anode_block="590",
                anode_effect_threshold_v=8.0,
            ),
        ),
    ],
    ids=["overridden", "plant-targets", "unknown-potline"],
)
def test_targets_for(workdir: Path, potline: str, expected: Targets) -> None:
    write(workdir, OVERRIDES)
    assert load_config("cellmon.yaml").targets_for(potline) == expected


@pytest.mark.parametrize(
    ("potline", "expected"),
    [("P1", 13450.0), ("P2", 13300.0), ("P9", None)],
    ids=["first", "second", "unknown"],
)
def test_potline_lookup(workdir: Path, potline: str, expected: float | None) -> None:
    write(workdir, OVERRIDES)
    found = load_config("cellmon.yaml").potline(potline)
    assert (found.baseline_sec_kwh_per_t if found else None) == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", "cellmon-1"),
        ("mqtt: {client_id: cellmon-7}\n", "cellmon-7"),
        ("instance: east\n", "east"),
    ],
    ids=["default", "client-id", "explicit"],
)
def test_instance_name(workdir: Path, extra: str, expected: str) -> None:
    write(workdir, MINIMAL + extra)
    assert load_config("cellmon.yaml").instance_name == expected


@pytest.mark.parametrize(
    ("env_name", "environment", "expected"),
    [
        ("CELLMON_TEST_TOKEN", {"CELLMON_TEST_TOKEN": "s3cret"}, "s3cret"),
        ("CELLMON_TEST_TOKEN", {}, None),
        ("CELLMON_TEST_TOKEN", {"CELLMON_TEST_TOKEN": ""}, None),
        (None, {"CELLMON_TEST_TOKEN": "s3cret"}, None),
    ],
    ids=["set", "unset", "empty", "not-configured"],
)
def test_secret_reads_environment(
    monkeypatch: pytest.MonkeyPatch,
    env_name: str | None,
    environment: dict[str, str],
    expected: str | None,
) -> None:
    monkeypatch.delenv("CELLMON_TEST_TOKEN", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert secret(env_name) == expected
    assert SHIPPED.secret(env_name) == expected


def test_secret_value_never_enters_the_config(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLMON_TEST_TOKEN", "s3cret")
    write(workdir, MINIMAL + "influx: {token_env: CELLMON_TEST_TOKEN}\n")
    cfg = load_config("cellmon.yaml")
    assert "s3cret" not in repr(cfg)
    assert cfg.secret(cfg.influx.token_env) == "s3cret"


def test_config_is_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        SHIPPED.mqtt.port = 1884  # type: ignore[misc]


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
        "anode_effect_threshold_v), the derived fields above this one, and pass-through "
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
        "anode_cycle_days, anode_cycle_tolerance_days, anode_effect_threshold_v), got "
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
