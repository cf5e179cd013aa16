"""``cellmon check --sample``: the rules run on a sample file, the report worked out by hand."""

import base64
import json
from pathlib import Path

import pytest

from collector.commands.cli import main
from collector.source.sparkplug.payload import Datatype, Metric, encode

CONFIG = "plant:\n  potlines:\n    - id: P1\n      baseline_sec_kwh_per_t: 13450\n"
RULES = """\
inputs:
  - name: telemetry
    topic: smelter/{potline}/{cell}/telemetry
    kind: telemetry
  - name: events
    topic: smelter/{potline}/{cell}/event
    kind: event
derived:
  - name: resistance_uohm
    expr: (cell_voltage_v - 1.65) / line_current_ka * 1000
  - name: superheat_k
    expr: bath_temp_c - 950
alarms:
  - name: high_voltage
    field: cell_voltage_v
    above: 4.5
    hold_s: 60
  - name: no_data
    stale_s: 600
    severity: critical
"""
# C1 and C2 of P1 from 2024-03-01T00:00:00Z (1709251200000 ms): a climb above 4.5 V, a zero
# current, a malformed payload, a bath temperature, a metal tap, a duplicate, a stray topic
SAMPLE = (Path(__file__).parent / "data" / "sample.jsonl").read_text()


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(RULES)
    (tmp_path / "cellmon.yaml").write_text(CONFIG)
    (tmp_path / "sample.jsonl").write_text(SAMPLE)
    return str(tmp_path / "cellmon.yaml"), str(tmp_path / "sample.jsonl")


def test_the_report_says_what_each_rule_made_of_each_message(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, sample = files
    assert main(["check", "--config", config, "--sample", sample]) == 1  # a message was rejected
    out = capsys.readouterr().out.splitlines()
    # resistance (U - 1.65) / I * 1000: (4.15 - 1.65) / 400 * 1000 = 6.25; 4.6 V: 7.375;
    # 4.05 V: 6; at 0 kA a division by zero. Superheat 965 - 950 = 15 where there is a bath
    # temperature. high_voltage holds from 60 s and has held 60 s at 120 s: raised there;
    # cleared at 180 s. C2 and C1 never fall 600 s behind the potline: no_data says nothing.
    no_bath = "superheat_k=(no value: bath_temp_c absent)"
    assert out[1:] == [
        f"{sample}:2: smelter/P1/C1/telemetry: input telemetry: 1 sample",
        "    P1/C1 2024-03-01T00:00:00Z cell_voltage_v=4.15 line_current_ka=400"
        f"  → resistance_uohm=6.25 {no_bath}",
        f"{sample}:3: smelter/P1/C1/telemetry: input telemetry: 3 samples",
        "    P1/C1 2024-03-01T00:01:00Z cell_voltage_v=4.6 line_current_ka=400"
        f"  → resistance_uohm=7.375 {no_bath}",
        "    P1/C1 2024-03-01T00:02:00Z cell_voltage_v=4.6 line_current_ka=400"
        f"  → resistance_uohm=7.375 {no_bath}",
        "    P1/C1 2024-03-01T00:03:00Z cell_voltage_v=4.4 line_current_ka=0"
        "  → resistance_uohm=(no value: math error, e.g. a division by zero) " + no_bath,
        f"{sample}:5: smelter/P1/C2/telemetry: rejected (not_json): payload is not JSON: "
        "unexpected character, expected a string key: line 1 column 11 (char 10)",
        f"{sample}:6: smelter/P1/C2/telemetry: input telemetry: 1 sample",
        "    P1/C2 2024-03-01T00:00:00Z cell_voltage_v=4.05 line_current_ka=400 bath_temp_c=965"
        "  → resistance_uohm=6 superheat_k=15",
        f"{sample}:7: smelter/P1/C2/event: input events: 1 event",
        '    P1/C2 2024-03-01T00:00:30Z metal_tap {"metal_kg":1500}',
        f"{sample}:8: smelter/P1/C1/telemetry: input telemetry: 1 sample",
        "    P1/C1 2024-03-01T00:00:00Z cell_voltage_v=4.15 line_current_ka=400"
        "  (duplicate: dropped, as cellmon run would)",
        f"{sample}:9: elsewhere/P1/C1: rejected (bad_topic): topic matches no input",
        "",
        "alarms:",
        "  high_voltage (warning): 1 raised, 1 cleared",
        "    raised P1/C1 2024-03-01T00:02:00Z value 4.6",
        "    cleared P1/C1 2024-03-01T00:03:00Z value 4.4",
        "  no_data (critical): nothing",
    ]


def test_a_sample_that_decodes_cleanly_exits_0(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, sample = files
    clean = [line for line in SAMPLE.splitlines() if "oops" not in line and "elsewhere" not in line]
    Path(sample).write_text("\n".join(clean) + "\n")
    assert main(["check", "--config", config, "--sample", sample]) == 0


def test_a_broken_sample_file_names_its_lines(
    files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, sample = files
    Path(sample).write_text('{"topic": "a/b"}\nnot json\n[1]\n{"topic": 1, "payload": {}}\n')
    assert main(["check", "--config", config, "--sample", sample]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[1].startswith(f"{sample}:2: line: not JSON: ")  # and the parser's words
    assert err[:1] + err[2:] == [
        f"{sample}:1: payload: missing",
        f'{sample}:3: line: expected an object {{"topic": ..., "payload": ...}}',
        f"{sample}:4: topic: missing, or not a string",
    ]


SPARKPLUG_RULES = """\
sparkplug:
  - name: gateways
    potline: group
    cell: device
    metrics:
      cell_voltage_v: Voltage
      line_current_ka: {name: LineCurrent, unit: A}
"""


def sparkplug_line(topic: str, seq: int, metrics: list[Metric], **kw: bool) -> str:
    body = encode(1709251200000, seq, metrics, **kw)
    return json.dumps({"topic": topic, "payload_base64": base64.b64encode(body).decode()})


def test_sparkplug_messages_are_read_in_order_by_one_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(SPARKPLUG_RULES)
    (tmp_path / "cellmon.yaml").write_text(CONFIG)
    node, device = "spBv1.0/P1/NBIRTH/S1", "spBv1.0/P1/{}/S1/C7"
    double = Datatype.DOUBLE
    lines = [
        sparkplug_line(device.format("DDATA"), 9, [Metric(alias=1, datatype=double, value=4.0)]),
        sparkplug_line(node, 0, [Metric(name="bdSeq", datatype=Datatype.INT64, value=0)]),
        sparkplug_line(
            device.format("DBIRTH"),
            1,
            [
                Metric(name="Voltage", alias=1, datatype=double, value=4.2),
                Metric(name="LineCurrent", alias=2, datatype=double, value=300_000.0),
            ],
        ),
        sparkplug_line(
            device.format("DDATA"),
            2,
            [Metric(alias=1, datatype=double, value=4.3, timestamp_ms=1709251260000)],
            datatypes=False,
        ),
    ]
    sample = tmp_path / "sample.jsonl"
    sample.write_text("\n".join(lines) + "\n")
    assert main(["check", "--config", str(tmp_path / "cellmon.yaml"), "--sample", str(sample)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(
        "OK (potlines: P1; inputs: spBv1.0/+/# (Sparkplug B); 0 derived fields; 0 alarms)"
    )
    assert out[1:7] == [
        f"{sample}:1: spBv1.0/P1/DDATA/S1/C7: input gateways: sparkplug_rebirth_requests 1, "
        "sparkplug_unknown_alias 1",
        "    would ask for a rebirth on spBv1.0/P1/NCMD/S1",
        f"{sample}:2: spBv1.0/P1/NBIRTH/S1: input gateways: sparkplug_births 1",
        f"{sample}:3: spBv1.0/P1/DBIRTH/S1/C7: input gateways: 1 sample, sparkplug_births 1",
        "    P1/C7 2024-03-01T00:00:00Z cell_voltage_v=4.2 line_current_ka=300",
        f"{sample}:4: spBv1.0/P1/DDATA/S1/C7: input gateways: 1 sample",
    ]
    assert out[7] == "    P1/C7 2024-03-01T00:01:00Z cell_voltage_v=4.3 line_current_ka=300"
