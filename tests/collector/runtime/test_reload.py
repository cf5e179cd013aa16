"""The rules and config watcher: which edits reload, which are refused, and how often it looks."""

from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.config.models import Config
from collector.config.yamlsource import ConfigError
from collector.runtime.reload import Refused, RulesWatcher
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


def ce(cfg: Config) -> float:
    return cfg.plant.potlines[0].current_efficiency


def test_a_changed_current_efficiency_is_taken_with_the_rules(tmp_path: Path) -> None:
    w, clock, _ = watcher(tmp_path)
    config = tmp_path / "cellmon.yaml"
    config.write_text(config.read_text() + "      current_efficiency: 0.95\n")
    clock.now = 10
    cfg = w.poll()
    assert cfg is not None
    assert w.config_changed
    assert ce(cfg) == 0.95
    (tmp_path / "rules" / "default.yaml").write_text(DERIVED)
    clock.now = 20
    cfg = w.poll()
    assert cfg is not None
    assert not w.config_changed  # the rules alone
    assert ce(cfg) == 0.95


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ("mqtt:\n  port: 1884\n", "mqtt changed (needs a restart)"),
        ("state_dir: elsewhere\n", "state_dir changed (needs a restart)"),
        (
            "    - id: P2\n      baseline_sec_kwh_per_t: 13450\n",
            "plant.potlines ids changed: +P2 (needs a restart)",
        ),
    ],
)
def test_a_change_that_needs_a_restart_is_refused(tmp_path: Path, edit: str, why: str) -> None:
    w, clock, _ = watcher(tmp_path)
    config = tmp_path / "cellmon.yaml"
    before = w.cfg
    text = config.read_text()
    config.write_text(text + edit if edit.startswith(" ") else edit + text)
    clock.now = 10
    with pytest.raises(Refused) as err:
        w.poll()
    assert str(err.value) == why
    assert w.cfg is before
    clock.now = 20
    assert w.poll() is None  # once per change
    config.write_text(text + "      current_efficiency: 0.9\n")
    clock.now = 30
    cfg = w.poll()
    assert cfg is not None
    assert ce(cfg) == 0.9


def test_a_shard_keeps_its_own_potlines(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(RULES)
    config = tmp_path / "cellmon.yaml"
    two = MINIMAL + "    - id: P2\n      baseline_sec_kwh_per_t: 13000\n"
    config.write_text(two)
    full = load_config(config).split(2)
    clock = Clock()
    w = RulesWatcher(full.shard(full.shards[1]), clock)
    config.write_text(two.replace("13000", "12900"))
    clock.now = 10
    cfg = w.poll()
    assert cfg is not None
    assert [(p.id, p.baseline_sec_kwh_per_t) for p in cfg.plant.potlines] == [("P2", 12900)]
    assert cfg.state_dir == full.shard(full.shards[1]).state_dir


def test_sighup_reloads_the_config_file_even_when_checks_are_off(tmp_path: Path) -> None:
    w, clock, _ = watcher(tmp_path, check_s=0)
    config = tmp_path / "cellmon.yaml"
    config.write_text(config.read_text() + "      current_efficiency: 0.95\n")
    clock.now = 1e6
    assert w.poll() is None
    cfg = w.poll(force=True)
    assert cfg is not None
    assert w.config_changed
    assert ce(cfg) == 0.95
