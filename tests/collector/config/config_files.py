"""Config and rules files written for a test, and the issues cellmon reports for them."""

from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.config.yamlsource import ConfigError

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


def write(workdir: Path, config: str, rules: dict[str, str] | None = None) -> str:
    """The config file and rules files in ``workdir``; returns the config's relative name."""
    (workdir / "cellmon.yaml").write_text(config)
    for name, text in (rules if rules is not None else {"default.yaml": RULES}).items():
        (workdir / "rules" / name).write_text(text)
    return "cellmon.yaml"


def issues_of(path: str) -> list[str]:
    """Every issue the loader reports, as printed."""
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return [str(issue) for issue in err.value.issues]
