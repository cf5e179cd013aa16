import re
from datetime import time
from pathlib import Path

import pytest

from collector.config.loader import check, load_config
from collector.config.models import Config, Targets, secret
from collector.config.yamlsource import ConfigError, ConfigIssue
from tests.collector.config.config_files import MINIMAL, RULES, issues_of, write

REPO = Path(__file__).resolve().parents[3]

# The shipped sample: it must load, and say what the contract says.

SHIPPED = load_config(REPO / "config" / "cellmon.yaml")


def value_at(cfg: Config, dotted: str) -> object:
    value: object = cfg
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)  # type: ignore[index]  # a path into any model
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
        ("mqtt.client", "mqtt5"),
        ("mqtt.receive_maximum", 500),
        ("ingest.ack_batch", 20),
        ("ingest.ack_interval_ms", 100.0),
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
        ("sink.batch_lines", 5000),
        ("sink.flush_interval_s", 0.5),
        ("sink.max_buffer_mib", 1024.0),
        ("sink.retry_max_s", 30.0),
        ("sink.shutdown_s", 20.0),
        ("state_dir", "var/cellmon"),
        ("state_path", Path("var/cellmon")),
        ("metrics_interval_s", 10.0),
        ("instance", None),
        ("instance_name", "cellmon-1"),
        ("shards", []),
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
        ("targets.anode_settle_band_mv", 50.0),
        ("targets.anode_settle_max_min", 480),
        ("targets.clock_drift_limit_s", 30.0),
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
        "sink-type",
        """\
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
sink:
  type: kafka
""",
        "cellmon.yaml:3: sink.type: must be one of 'influx', 'file', got 'kafka'",
    ),
    (
        "sink-key-of-another-type",
        """\
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
sink:
  type: influx
  paht: points.lp
""",
        "cellmon.yaml:4: sink.paht: unknown key; expected one of: type, batch_lines, "
        "flush_interval_s, max_buffer_mib, retry_max_s, shutdown_s",
    ),
    (
        "file-sink-typo",
        """\
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
sink:
  type: file
  paht: points.lp
""",
        "cellmon.yaml:4: sink.paht: unknown key; did you mean 'path'?",
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
        "alerts, state_dir, metrics_interval_s, metrics, rules_check_s, instance, plant, "
        "targets, pfc, shards",
    ),
    (
        "replaced-section",
        """\
plant: {potlines: [{id: P1, baseline_sec_kwh_per_t: 13450}]}
anode_response:
  band_v: 0.05
""",
        "cellmon.yaml:2: anode_response: replaced in version 1.2 by "
        "targets.anode_settle_band_mv (mV) and targets.anode_settle_max_min (the settling "
        "after an anode change, contract 6.3): remove the section",
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
        "alerts, state_dir, metrics_interval_s, metrics, rules_check_s, instance, plant, "
        "targets, pfc, shards\n"
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


# Files too large to be a config: refused before they are parsed.

ONE_MIB = 1024 * 1024


def padded(text: str, size: int) -> str:
    """``text``, a tab that YAML refuses, and unknown keys: ``size`` bytes in all."""
    text += "\tnot: yaml\n"
    keys = "".join(f"unknown_{i}: {i}\n" for i in range(size // 10))
    return text + keys[: size - len(text)]


def test_a_config_file_over_the_limit_is_one_issue(workdir: Path) -> None:
    text = padded(MINIMAL, ONE_MIB + 1)
    path = write(workdir, text)
    assert issues_of(path) == [
        f"cellmon.yaml:1: (file): file of {len(text.encode())} bytes exceeds the 1 MiB limit "
        "for a config file"
    ]


def test_a_rules_file_over_the_limit_is_one_issue(workdir: Path) -> None:
    rules = padded(RULES, 3 * ONE_MIB)
    path = write(workdir, MINIMAL, {"default.yaml": rules})
    assert issues_of(path) == [
        f"rules/default.yaml:1: (file): file of {3 * ONE_MIB} bytes exceeds the 1 MiB limit "
        "for a config file"
    ]


def test_a_file_at_the_limit_is_read(workdir: Path) -> None:
    text = MINIMAL + "#" * (ONE_MIB - len(MINIMAL) - 1) + "\n"
    assert len(text.encode()) == ONE_MIB
    assert load_config(write(workdir, text)).plant.potlines[0].id == "P1"


# Targets, lookups and secrets.

OVERRIDES = """\
plant:
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
      targets: {anode_cycle_days: 30, anode_block: "600", anode_settle_band_mv: 30}
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
                anode_settle_band_mv=30.0,
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


CLOCK_LIMITS = """\
plant:
  potlines:
    - {id: P1, baseline_sec_kwh_per_t: 13450, targets: {clock_drift_limit_s: null}}
    - {id: P2, baseline_sec_kwh_per_t: 13450, targets: {clock_drift_limit_s: 60}}
    - {id: P3, baseline_sec_kwh_per_t: 13450, targets: {anode_block: null}}
    - {id: P4, baseline_sec_kwh_per_t: 13450}
targets:
  clock_drift_limit_s: 45
"""


def test_a_nullable_target_set_to_null_turns_its_watch_off_for_the_potline(
    workdir: Path,
) -> None:
    # clock_drift_limit_s is in NULLABLE_TARGETS: null is a value; any other null is absent
    cfg = load_config(write(workdir, CLOCK_LIMITS))
    limits = {p: cfg.targets_for(p).clock_drift_limit_s for p in ("P1", "P2", "P3", "P4")}
    assert limits == {"P1": None, "P2": 60.0, "P3": 45.0, "P4": 45.0}
    assert cfg.targets_for("P3").anode_block == "590"
    plant_off = load_config(write(workdir, MINIMAL + "targets: {clock_drift_limit_s: null}\n"))
    assert plant_off.targets_for("P1").clock_drift_limit_s is None


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
        SHIPPED.mqtt.port = 1884  # type: ignore[misc]  # the point: frozen


TWO_POTLINES = """\
mqtt: {client_id: plant-a}
state_dir: var/a
plant:
  potlines:
    - {id: P1, baseline_sec_kwh_per_t: 13450}
    - {id: P2, baseline_sec_kwh_per_t: 13400}
"""


def test_two_shards_may_not_own_one_potline(workdir: Path) -> None:
    text = TWO_POTLINES + (
        "shards:\n"
        "  - {name: a, potlines: [P1]}\n"
        "  - {name: b, potlines: [P2, P1, P9]}\n"
        "  - {name: a, potlines: [P2]}\n"
    )
    assert issues_of(write(workdir, text)) == [
        "cellmon.yaml:9: shards[1].potlines[1]: 'P1' is owned by shards[0] too",
        "cellmon.yaml:9: shards[1].potlines[2]: 'P9' is not a potline of plant.potlines",
        "cellmon.yaml:10: shards[2].potlines[0]: 'P2' is owned by shards[1] too",
        "cellmon.yaml:10: shards[2].name: duplicate name, also shards[0]",
    ]


def test_a_potline_no_shard_owns_is_a_gap(workdir: Path) -> None:
    text = TWO_POTLINES + "shards:\n  - {name: a, potlines: [P1]}\n"
    assert issues_of(write(workdir, text)) == [
        "cellmon.yaml:7: shards: potline 'P2' is owned by no shard"
    ]


def test_each_shard_is_an_instance_of_its_own(workdir: Path) -> None:
    text = TWO_POTLINES + "shards:\n  - {name: a, potlines: [P2]}\n  - {name: b, potlines: [P1]}\n"
    cfg = load_config(write(workdir, text))
    a, b = (cfg.shard(s) for s in cfg.shards)
    assert [p.id for p in a.plant.potlines] == ["P2"]
    assert [p.id for p in b.plant.potlines] == ["P1"]
    assert (a.mqtt.client_id, a.state_path, a.instance_name) == (
        "plant-a-a",
        Path("var/a/a"),
        "plant-a-a",
    )
    assert (b.mqtt.client_id, b.state_path, a.shards) == ("plant-a-b", Path("var/a/b"), [])
    assert b.plant.potlines[0].baseline_sec_kwh_per_t == 13450


def test_split_deals_the_potlines_round_robin(workdir: Path) -> None:
    text = TWO_POTLINES.replace(
        "    - {id: P2, baseline_sec_kwh_per_t: 13400}\n",
        "    - {id: P2, baseline_sec_kwh_per_t: 13400}\n"
        "    - {id: P3, baseline_sec_kwh_per_t: 13400}\n",
    )
    cfg = load_config(write(workdir, text)).split(2)
    assert [(s.name, s.potlines) for s in cfg.shards] == [("s1", ["P1", "P3"]), ("s2", ["P2"])]
