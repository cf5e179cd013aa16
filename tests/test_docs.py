"""The documents against the repository and the code.

Links of README.md and docs/*.md must lead to files of the clone and to headings that
exist. docs/contract.md is the expected side of the code's names: its measurements, tags
and fields against what the pipeline writes for a simulated potline day
(``tests.docs_points``), its commands' flags against the argument parser, its keys
against the configuration models.
"""

from __future__ import annotations

import re
import types
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest

from collector.commands.cli import MODULE_COMMANDS, build_parser
from collector.config.models import ConfigFile
from collector.config.rules import RulesFile
from collector.config.schema import Section
from tests.docs_points import Written, written_by_a_potline_day

REPO = Path(__file__).resolve().parents[1]
CONTRACT = REPO / "docs" / "contract.md"
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`]*`")
NAME = re.compile(r"`([^`]+)`")


# ---- Markdown ------------------------------------------------------------------------


def prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the text outside fenced and indented code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced and not line.startswith("    "):
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation but - and _ dropped, spaces to -."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, duplicates numbered -1, -2 as GitHub does."""
    seen: dict[str, int] = defaultdict(int)
    found = set()
    for _, line in prose(path.read_text(encoding="utf-8")):
        m = re.match(r"#{1,6} (.+)", line)
        if m is None:
            continue
        base = slug(m.group(1))
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link outside code."""
    for number, line in prose(path.read_text(encoding="utf-8")):
        for m in LINK.finditer(CODE_SPAN.sub("", line)):
            yield number, m.group(1)


def broken(path: Path, target: str) -> str | None:
    """Why a link target of ``path`` does not lead inside the repository, or None."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target):
        return "leads outside the repository"
    file_part, _, anchor = target.partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    if not dest.is_relative_to(REPO):
        return "leaves the repository"
    if not dest.exists():
        return "no such file"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"no heading #{anchor} in {dest.relative_to(REPO)}"
    return None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_leads_to_a_file_and_heading_of_the_clone(document: Path) -> None:
    problems = [
        f"{document.relative_to(REPO)}:{n}: {target}: {why}"
        for n, target in links(document)
        if (why := broken(document, target)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_the_slugs_follow_githubs_rules() -> None:
    assert slug("Splitting a plant by potline") == "splitting-a-plant-by-potline"
    assert slug("`sparkplug`: Sparkplug B edge nodes") == "sparkplug-sparkplug-b-edge-nodes"
    assert slug("Rules: `rules/*.yaml`") == "rules-rulesyaml"
    assert slug("kWh per tonne (`sec_cell`, `sec_potline`)") == "kwh-per-tonne-sec_cell-sec_potline"


def test_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    page = REPO / "docs" / "contract.md"
    assert broken(page, "kpis.md") is None
    assert broken(page, "#3-command-line") is None
    assert broken(page, "nowhere.md") == "no such file"
    assert broken(page, "kpis.md#nowhere") == "no heading #nowhere in docs/kpis.md"
    assert broken(page, "../../shared/contract.md") == "leaves the repository"
    assert broken(page, "https://example.com/") == "leads outside the repository"


# ---- docs/contract.md ----------------------------------------------------------------


def section(number: int) -> list[str]:
    """The prose lines of section ``number`` of docs/contract.md."""
    lines = [line for _, line in prose(CONTRACT.read_text(encoding="utf-8"))]
    start = next(k for k, line in enumerate(lines) if line.startswith(f"## {number}. "))
    end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), None)
    return lines[start + 1 : end]


def first_cell_names(line: str) -> list[str]:
    """The code spans of a table row's first cell; none for other lines and header rows."""
    if not line.startswith("|") or line.startswith("|---"):
        return []
    return NAME.findall(line.split("|")[1])


def table_names(lines: list[str]) -> set[str]:
    return {name for line in lines for name in first_cell_names(line)}


def by_heading(lines: list[str]) -> dict[str, list[str]]:
    """The lines under each ``### `name` …`` heading, by the heading's first code span."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        m = re.match(r"### `([^`]+)`", line)
        if m is not None:
            current = parts[m.group(1)] = []
        elif line.startswith("#"):
            current = None
        elif current is not None:
            current.append(line)
    return parts


def documented_schema() -> Written:
    """Measurements, tags and fields as section 2 lists them."""
    doc = Written()
    parts = by_heading(section(2))
    for measurement, lines in parts.items():
        text = " ".join(lines)
        tags = re.search(r"Tags: ([^.]*)\.", text)
        assert tags is not None, f"{measurement}: no 'Tags:' sentence"
        doc.tags[measurement] = set(NAME.findall(tags.group(1)))
        doc.fields[measurement] = table_names(lines)
    for measurement, lines in parts.items():
        inherited = re.search(r"every field of `([^`]+)`", " ".join(lines))
        if inherited is not None:
            doc.fields[measurement] |= doc.fields[inherited.group(1)]
    return doc


def pattern(name: str) -> re.Pattern[str]:
    """A documented name; ``<...>`` stands for any name (letters, digits, _)."""
    parts = re.split(r"<[^>]+>", name)
    return re.compile("[A-Za-z0-9_]+".join(re.escape(p) for p in parts))


def mismatches(documented: set[str], written: set[str]) -> tuple[set[str], set[str]]:
    """(written but not documented, documented but never written).

    A literal name must be written as it is; a pattern must match something written, and
    covers what no literal names.
    """
    literal = {n for n in documented if "<" not in n}
    patterns = [pattern(n) for n in documented - literal]
    undocumented = {w for w in written - literal if not any(p.fullmatch(w) for p in patterns)}
    unwritten = {n for n in literal if n not in written}
    unwritten |= {
        n
        for n in documented - literal
        if not any(pattern(n).fullmatch(w) for w in written - literal)
    }
    return undocumented, unwritten


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    return written_by_a_potline_day(tmp_path_factory.mktemp("potline-day"))


def test_the_documented_measurements_are_those_written(written: Written) -> None:
    assert set(documented_schema().fields) == set(written.fields)


def test_each_measurement_has_the_documented_tags(written: Written) -> None:
    doc = documented_schema()
    wrong = {
        m: (sorted(written.tags[m]), sorted(doc.tags[m]))
        for m in written.tags
        if written.tags[m] != doc.tags.get(m)
    }
    assert not wrong, f"(written, documented) tags: {wrong}"


def test_each_measurement_has_the_documented_fields(written: Written) -> None:
    doc = documented_schema()
    wrong = {}
    for m in sorted(set(written.fields) | set(doc.fields)):
        undocumented, unwritten = mismatches(doc.fields.get(m, set()), written.fields.get(m, set()))
        if undocumented or unwritten:
            wrong[m] = f"undocumented {sorted(undocumented)}, never written {sorted(unwritten)}"
    assert not wrong, "\n".join(f"{m}: {why}" for m, why in wrong.items())


def test_a_pattern_covers_a_family_and_a_literal_must_be_written() -> None:
    documented = {"rejected", "rejected_<reason>", "lag_s"}
    assert mismatches(documented, {"rejected", "rejected_not_json", "lag_s"}) == (set(), set())
    assert mismatches(documented, {"rejected", "lag_s"}) == (set(), {"rejected_<reason>"})
    assert mismatches(documented, {"rejected_x", "lag_s", "new"}) == ({"new"}, {"rejected"})


# ---- the command line ----------------------------------------------------------------


def parser_options() -> dict[str, set[str]]:
    """Each command's long options, as the argument parser has them; "cellmon": the global ones."""
    parser = build_parser(list(MODULE_COMMANDS))
    options = {"cellmon": _long_options(parser)}
    _commands(parser, "cellmon", options)
    return options


def _commands(parser: Any, prefix: str, options: dict[str, set[str]]) -> None:
    """Each command's options; a command of subcommands (``deadletter list``) by subcommand."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in getattr(action, "choices", {}).items():
            if sub._subparsers:
                _commands(sub, f"{prefix} {name}", options)
            else:
                options[f"{prefix} {name}"] = _long_options(sub)


def _long_options(parser: Any) -> set[str]:
    return {
        flag
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }


def test_every_command_and_option_is_documented() -> None:
    documented = {
        " ".join(word for word in heading.split() if not word.isupper()): {
            name.split(" ")[0] for name in table_names(lines)
        }
        for heading, lines in by_heading(section(3)).items()
    }
    assert documented == parser_options()


# ---- configuration keys --------------------------------------------------------------


def _sections_in(annotation: Any) -> tuple[list[type[Section]], bool]:
    """The config sections a key's type holds (a key with one is a mapping of keys), and
    whether it is a list of them; ([], False) for a leaf."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _sections_in(get_args(annotation)[0])
    if origin is list:
        inner, _ = _sections_in(get_args(annotation)[0])
        return inner, bool(inner)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        found = [_sections_in(a)[0] for a in members]
        if all(found):
            return [s for f in found for s in f], False
        return [], False
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return [annotation], False
    return [], False


def config_keys(model: type[Section], prefix: str = "") -> set[str]:
    """Every key of a config section, nested ones dotted, list items as ``key[].``."""
    keys = set()
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        sections, listed = _sections_in(info.annotation)
        for sub in sections:
            keys |= config_keys(sub, key + ("[]." if listed else "."))
        if not sections:
            keys.add(key)
    return keys


def test_every_key_of_cellmon_yaml_is_documented() -> None:
    assert table_names(by_heading(section(4))["cellmon.yaml"]) == config_keys(ConfigFile)


def test_every_key_of_the_rules_files_is_documented() -> None:
    assert table_names(by_heading(section(4))["rules/*.yaml"]) == config_keys(RulesFile)
