"""The rules watcher: which edits reload, which are refused, and how often it looks."""

from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.config.yamlsource import ConfigError
from collector.runtime.reload import RulesWatcher
from tests.collector.config.config_files import MINIMAL, RULES

CONFIG = "rules_check_s: {check_s}\n" + MINIMAL
DERIVED = RULES + "derived:\n  - name: r\n    expr: cell_voltage_v * 2\n"
BROKEN = RULES + "derived:\n  - name: r\n    expr: cell_voltage * 2\n"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watcher(tmp_path: Path, check_s: float = 2.0) -> tuple[RulesWatcher, Clock, Path]:
    (tmp_path / "rules").mkdir()
    rules = tmp_path / "rules" / "default.yaml"
    rules.write_text(RULES)
    (tmp_path / "cellmon.yaml").write_text(CONFIG.format(check_s=check_s))
    clock = Clock()
    return RulesWatcher(load_config(tmp_path / "cellmon.yaml"), clock), clock, rules


def test_a_valid_change_is_loaded_at_the_next_check(tmp_path: Path) -> None:
    w, clock, rules = watcher(tmp_path)
    rules.write_text(DERIVED)
    clock.now = 1.9
    assert w.poll() is None  # not yet time to look
    clock.now = 2.0
    cfg = w.poll()
    assert cfg is not None
    assert [d.name for d in cfg.rules.derived] == ["r"]
    assert cfg.plant == w.cfg.plant
    clock.now = 4.0
    assert w.poll() is None  # no further change


def test_same_content_rewritten_reloads_nothing(tmp_path: Path) -> None:
    w, clock, rules = watcher(tmp_path)
    rules.write_text(RULES)
    clock.now = 10
    assert w.poll() is None


def test_a_new_file_counts_as_a_change(tmp_path: Path) -> None:
    w, clock, _ = watcher(tmp_path)
    (tmp_path / "rules" / "more.yaml").write_text("alarms:\n  - name: quiet\n    stale_s: 60\n")
    clock.now = 10
    cfg = w.poll()
    assert cfg is not None
    assert [a.name for a in cfg.rules.alarms] == ["quiet"]


def test_invalid_rules_are_refused_with_their_line_and_the_old_ones_stay(tmp_path: Path) -> None:
    w, clock, rules = watcher(tmp_path)
    rules.write_text(BROKEN)
    clock.now = 10
    with pytest.raises(ConfigError) as err:
        w.poll()
    assert str(err.value.issues[0]).startswith(
        f"{rules}:7: derived[0].expr: unknown name 'cell_voltage'"
    )
    assert w.cfg.rules.derived == []
    clock.now = 20
    assert w.poll() is None  # said once per change, not at every check
    rules.write_text(DERIVED)
    clock.now = 30
    assert w.poll() is not None


def test_sighup_reloads_even_when_checks_are_off(tmp_path: Path) -> None:
    w, clock, rules = watcher(tmp_path, check_s=0)
    rules.write_text(DERIVED)
    clock.now = 1e6
    assert w.poll() is None
    cfg = w.poll(force=True)
    assert cfg is not None
    assert [d.name for d in cfg.rules.derived] == ["r"]
