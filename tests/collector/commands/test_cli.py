import subprocess
import sys
from pathlib import Path

import pytest

from collector.journal.locks import Busy, hold
from tests.harness import ROOT

BAD = """\
mqtt:
  host: broker.plant.local
  prot: 1883
plant:
  max_gap_s: abc
  potlines:
    - id: P1
      current_efficiency: 0.93
"""


def cellmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.commands.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_rules(directory: Path) -> None:
    (directory / "rules").mkdir()
    (directory / "rules" / "inputs.yaml").write_text(
        "inputs:\n  - {name: t, topic: 'smelter/{potline}/{cell}/telemetry', kind: telemetry}\n"
    )


def test_check_prints_every_error_as_file_line_key_message(tmp_path: Path) -> None:
    write_rules(tmp_path)
    config = tmp_path / "cellmon.yaml"
    config.write_text(BAD)
    done = cellmon("check", "--config", str(config))
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"{config}:3: mqtt.prot: unknown key; did you mean 'port'?",
        f"{config}:5: plant.max_gap_s: expected a number, got 'abc'",
        f"{config}:7: plant.potlines[0].baseline_sec_kwh_per_t: missing required key",
    ]


def test_check_prints_the_first_hundred_problems_and_counts_the_rest(tmp_path: Path) -> None:
    write_rules(tmp_path)
    config = tmp_path / "cellmon.yaml"
    head = "plant:\n  potlines:\n    - {id: P1, baseline_sec_kwh_per_t: 13450}\n"
    keys = [f"zz_{i:03d}" for i in range(250)]
    config.write_text(head + "".join(f"{key}: 1\n" for key in keys))
    done = cellmon("check", "--config", str(config))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    first_key_line = head.count("\n") + 1
    shown = [f"{config}:{first_key_line + i}: {key}: unknown key" for i, key in enumerate(keys)]
    assert [line.split(";")[0] for line in lines[:-1]] == shown[:100]
    assert lines[-1] == f"... and {len(keys) - 100} more problems"


def test_check_refuses_an_oversize_config_in_one_line(tmp_path: Path) -> None:
    write_rules(tmp_path)
    config = tmp_path / "cellmon.yaml"
    text = "".join(f"unknown_{i}: {i}\n" for i in range(200_000))
    config.write_text(text)
    done = cellmon("check", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{config}:1: (file): file of {len(text.encode())} bytes exceeds the 1 MiB limit "
        "for a config file"
    ]


def test_check_accepts_the_shipped_config() -> None:
    done = cellmon("check")
    assert done.returncode == 0, done.stderr
    assert "config/cellmon.yaml: OK" in done.stdout


def test_run_refuses_a_bad_config_before_connecting(tmp_path: Path) -> None:
    config = tmp_path / "cellmon.yaml"
    config.write_text(BAD)
    done = cellmon("run", "--config", str(config))
    assert done.returncode != 0
    assert f"{config}:3: mqtt.prot: unknown key" in done.stderr


def test_a_second_instance_on_the_same_state_directory_is_refused(tmp_path: Path) -> None:
    lock = hold(tmp_path / "state" / "cellmon.lock")
    try:
        write_rules(tmp_path)
        config = tmp_path / "cellmon.yaml"
        config.write_text(
            f"state_dir: {tmp_path / 'state'}\n"
            "plant:\n  potlines:\n    - {id: P1, baseline_sec_kwh_per_t: 13450}\n"
        )
        done = cellmon("run", "--config", str(config))
        assert done.returncode == 2
        assert "another cellmon runs on this state directory" in done.stderr
    finally:
        lock.close()
    first = hold(tmp_path / "held")
    with pytest.raises(Busy):
        hold(tmp_path / "held", wait_s=0.2)
    first.close()
    hold(tmp_path / "held").close()  # released with its holder
