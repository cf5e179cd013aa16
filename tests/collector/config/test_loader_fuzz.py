"""Fuzzing the config and rules loader: arbitrary YAML text and arbitrary structures.

Whatever an engineer (or a wrong path) puts in ``cellmon.yaml`` or in a rules file, the
loader either returns a ``Config`` or raises ``ConfigError`` whose issues each read
``file:line: key: message``; no other exception escapes (no ``KeyError``, ``TypeError``,
``ValueError``, ``RecursionError``), and ``cellmon check`` prints the outcome. The ``ci``
hypothesis profile (tests/conftest.py) fixes the seed; ``HYPOTHESIS_PROFILE=long``
searches longer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from collector.commands.cli import MAX_ISSUES_SHOWN, cmd_check
from collector.config import yamlsource
from collector.config.loader import load_config, load_rules
from collector.config.yamlsource import ConfigError, ConfigIssue
from tests.collector.config.config_files import MINIMAL, RULES

REPO = Path(__file__).resolve().parents[3]
SHIPPED_CONFIG = yaml.safe_load((REPO / "config" / "cellmon.yaml").read_text())
SHIPPED_RULES = yaml.safe_load((REPO / "config" / "rules" / "default.yaml").read_text())
# Loading the whole config costs milliseconds: the mutation tests try half the profile's count.
HALF = settings(max_examples=max(50, settings().max_examples // 2))
ISSUE = re.compile(r"(?P<file>[^\n]+?):(?P<line>\d+): (?P<key>[^\n]+?): (?P<message>.+)", re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("config")
    (directory / "rules").mkdir()
    return directory


def write(workdir: Path, config: str | bytes, rules: str | bytes) -> Path:
    path = workdir / "cellmon.yaml"
    for file, text in ((path, config), (workdir / "rules" / "default.yaml", rules)):
        file.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


def check_outcome(workdir: Path, config: str | bytes, rules: str | bytes) -> list[ConfigIssue]:
    """Loads, or every issue reads ``file:line: key: message``; ``check`` prints either.

    Returns the issues.
    """
    path = write(workdir, config, rules)
    files = {str(path), str(workdir / "rules" / "default.yaml"), f"{workdir / 'rules'}/*.yaml"}
    try:
        load_config(path)
    except ConfigError as err:
        issues = err.issues
    else:
        issues = []
    for issue in issues:
        assert isinstance(issue, ConfigIssue)
        m = ISSUE.fullmatch(str(issue))
        assert m is not None, str(issue)
        assert issue.file in files, issue
        assert isinstance(issue.line, int)
        assert issue.line >= 0
        assert issue.key
        assert issue.message.strip()
    # and as `cellmon check --config FILE` prints it
    out, err_out = io.StringIO(), io.StringIO()
    rc: int | str | None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err_out):
        try:
            rc = cmd_check(argparse.Namespace(config=str(path), sample=None))
        except SystemExit as stop:
            rc = stop.code
    if issues:
        assert rc == 2
        lines = err_out.getvalue().splitlines()
        shown = min(len(issues), MAX_ISSUES_SHOWN)
        assert len(lines) >= shown
        if len(issues) > MAX_ISSUES_SHOWN:
            assert lines[-1] == f"... and {len(issues) - MAX_ISSUES_SHOWN} more problems"
    else:
        assert rc == 0
        assert out.getvalue().startswith(f"{path}: OK")
    try:
        load_rules(path)  # as a reload reads them
    except ConfigError as err:
        rule_issues = err.issues
    else:
        rule_issues = []
    rules_file = str(workdir / "rules" / "default.yaml")
    assert rule_issues == [i for i in issues if i.file != str(path)] or rules_file not in files
    return issues


def fuzzed(workdir: Path, config: str | bytes, rules: str | bytes) -> None:
    issues = check_outcome(workdir, config, rules)
    event("refused" if issues else "loaded")


# Text: YAML's own punctuation and the schema's keys, so the parser gets past the first line.
TOKENS = [
    *SHIPPED_CONFIG, *SHIPPED_RULES, "potlines", "id", "P1", "name", "expr", "topic", "kind",
    ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "?", "&a", "*a", "*b", "!!str", "!!int",
    "!!python/object:os.system", "!!binary", "!!set", "<<", "|", ">", "'", '"', "#", "~",
    "null", "true", "1", "-1", "0x1F", "1e400", ".nan", ".inf", "1:30", "2001-12-14",
    "2024-02-30", "2001-13-45 25:61:00", "!!float", "!!bool", "!!timestamp", "!!null",
    "\\ud800", "\x07", "\t", "\n", "\n  ", "\n    ", " ", "---", "...", "%YAML 1.1",
]  # fmt: skip
yaml_text = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
any_text = st.text(st.characters(codec=None), max_size=200)
raw_bytes = st.binary(max_size=200)

keys = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from([*SHIPPED_CONFIG, "potlines", "id", "type", "name", "1", "<<"]),
    st.integers(min_value=-2, max_value=2),
    st.none(),
    st.booleans(),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(["P1", "smelter/{potline}/{cell}/telemetry", "telemetry", "event", "x"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)


def dumped(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a YAML document, the document itself first."""
    found = [prefix]
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list)
        else ()
    )
    for k, v in items:
        found += paths(v, (*prefix, k))
    return found


def set_at(data: Any, path: tuple[Any, ...], value: Any, action: str) -> Any:
    """A copy of ``data`` with the value at ``path`` replaced, removed, or given a sibling."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(data) if isinstance(data, dict) else list(data)
    if rest:
        copy[head] = set_at(copy[head], rest, value, action)
    elif action == "delete":
        del copy[head]
    elif action == "add" and isinstance(copy, dict):
        copy[f"{head}_x"] = value
    else:
        copy[head] = value
    return copy


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> str:
    """The shipped file with one to three of its values replaced, removed or joined."""
    data = base
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(paths(data)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        data = set_at(data, where, draw(values), action if where else "replace")
    return dumped(data)


config_with_plant = SHIPPED_CONFIG | yaml.safe_load(MINIMAL)
ODD_NUMBERS = [
    "0x" + "f" * 5000,  # an integer of 6000 digits that YAML builds without complaint
    "9" * 5000,  # beyond Python's 4300 digits for a decimal integer
    "1e400",
    "-.inf",
    ".nan",
    "0o777",
    "1_000",
    "190:20:30",
]


@given(st.one_of(yaml_text, any_text, raw_bytes))
def test_fuzz_arbitrary_text_as_the_config(workdir: Path, text: str | bytes) -> None:
    fuzzed(workdir, text, RULES)


@given(st.one_of(yaml_text, any_text, raw_bytes))
def test_fuzz_arbitrary_text_as_a_rules_file(workdir: Path, text: str | bytes) -> None:
    fuzzed(workdir, MINIMAL, text)


@given(values, values)
def test_fuzz_arbitrary_structures_dumped_to_yaml(workdir: Path, config: Any, rules: Any) -> None:
    fuzzed(workdir, dumped(config), dumped(rules))


@HALF
@given(mutated(config_with_plant))
def test_fuzz_the_shipped_config_mutated(workdir: Path, text: str) -> None:
    fuzzed(workdir, text, RULES)


@HALF
@given(mutated(SHIPPED_RULES))
def test_fuzz_the_shipped_rules_mutated(workdir: Path, text: str) -> None:
    fuzzed(workdir, MINIMAL, text)


@given(st.sampled_from(paths(config_with_plant)[1:]), st.sampled_from(ODD_NUMBERS))
def test_fuzz_numbers_yaml_reads_oddly_anywhere_in_the_config(
    workdir: Path, where: tuple[Any, ...], number: str
) -> None:
    marker = "__odd_number__"
    text = dumped(set_at(config_with_plant, where, marker, "replace"))
    fuzzed(workdir, text.replace(f"{marker}", number), RULES)


@pytest.mark.parametrize("depth", [100, 1500])  # libyaml stops at 1000, pyyaml recurses
@pytest.mark.parametrize("style", ["flow-list", "flow-map", "block-list"])
def test_fuzz_deep_nesting(workdir: Path, depth: int, style: str) -> None:
    if style == "flow-list":
        text = "[" * depth + "]" * depth
    elif style == "flow-map":
        text = "{a: " * depth + "1" + "}" * depth
    else:
        text = "".join(" " * i + "-\n" for i in range(depth)) if depth < 1000 else "- " * depth
    check_outcome(workdir, text, RULES)
    check_outcome(workdir, MINIMAL, text)


# Found by the fuzzing: each of these raised out of load_config (and so out of cellmon check).

HEX = "0x" + "f" * 5000  # YAML 1.1 reads it as an integer of 6000 digits, which has no text


@pytest.mark.parametrize(
    ("config", "rules", "expected"),
    [
        pytest.param(  # RecursionError in pyyaml, the fallback after libyaml's refusal
            "[" * 5000 + "]" * 5000,
            RULES,
            "cellmon.yaml:1: yaml: exceeded maximum nesting depth (while increasing flow level"
            " at line 1)",
            id="deep-flow-list",
        ),
        pytest.param(  # RecursionError
            MINIMAL,
            "{a: " * 3000 + "1" + "}" * 3000,
            "default.yaml:1: yaml: exceeded maximum nesting depth (while increasing flow level"
            " at line 1)",
            id="deep-flow-map-in-rules",
        ),
        pytest.param(  # ValueError: Exceeds the limit (4300 digits) for integer string conversion
            MINIMAL + "mqtt:\n  port: " + "9" * 5000 + "\n",
            RULES,
            "cellmon.yaml:6: yaml: a number of more than 4300 digits",
            id="decimal-integer-of-5000-digits",
        ),
        pytest.param(  # ValueError: day is out of range for month
            MINIMAL + "shift_start: 2024-02-30\n",
            RULES,
            "cellmon.yaml:5: yaml: cannot read '2024-02-30' as timestamp:"
            " day is out of range for month",
            id="a-date-that-does-not-exist",
        ),
        pytest.param(  # ValueError: invalid literal for int()
            MINIMAL,
            RULES + "    qos: !!int one\n",
            "default.yaml:5: yaml: cannot read 'one' as int:"
            " invalid literal for int() with base 10: 'one'",
            id="an-explicit-int-tag-on-a-word",
        ),
        pytest.param(  # IndexError: string index out of range (long profile)
            "!!float",
            RULES,
            "cellmon.yaml:1: yaml: cannot read '' as float",
            id="an-explicit-float-tag-on-nothing",
        ),
        pytest.param(  # IndexError (long profile)
            MINIMAL,
            "!!int",
            "default.yaml:1: yaml: cannot read '' as int",
            id="an-explicit-int-tag-on-nothing",
        ),
        pytest.param(  # ValueError from repr() of the value in the message
            MINIMAL + "mqtt:\n  port: " + HEX + "\n",
            RULES,
            "cellmon.yaml:6: mqtt.port: must be >= 1 and <= 65535,"
            " got a number of more than 301 digits",
            id="hex-integer-as-a-number",
        ),
        pytest.param(  # ValueError from the "write it in quotes" hint
            MINIMAL.replace("id: P1", "id: " + HEX),
            RULES,
            "cellmon.yaml:3: plant.potlines[0].id: expected a string,"
            " got a number of more than 301 digits",
            id="hex-integer-as-a-string",
        ),
        pytest.param(  # a key with a newline broke the issue over two lines
            MINIMAL,
            '"\\n": 1\n',
            "default.yaml:1: '\\n': unknown key; expected one of: inputs, sparkplug, derived, "
            "alarms",
            id="newline-in-a-key",
        ),
    ],
)
def test_bad_input_found_by_the_fuzzing_is_an_issue(
    workdir: Path, config: str, rules: str, expected: str
) -> None:
    issues = check_outcome(workdir, config, rules)
    assert any(str(issue).endswith(expected) for issue in issues), issues


def test_pyyaml_running_out_of_stack_is_an_issue(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without libyaml, pyyaml itself recurses per level: a RecursionError, once."""
    monkeypatch.setattr(yamlsource, "FAST_LOADER", yaml.SafeLoader)
    issues = check_outcome(workdir, "[" * 1000 + "]" * 1000, RULES)
    assert [str(i).split(": ", 1)[1] for i in issues] == [f"yaml: {yamlsource.TOO_DEEP}"]
    assert issues[0].line == 1
