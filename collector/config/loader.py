"""Loading ``cellmon.yaml`` and the rules beside it, with every problem as ``file:line``.

Everything is validated before anything connects, and all the problems of the config file
and of every rules file come back together as ``file:line: key: message``
(``collector.config.errors`` has the wording). Nothing else reads raw YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from collector.config.errors import message, walk
from collector.config.models import RULES_DIR, Config, ConfigFile
from collector.config.rules import Rules, RulesFile
from collector.config.schema import Section
from collector.config.yamlsource import (
    ConfigError,
    ConfigIssue,
    KeyPath,
    YamlDoc,
    dotted,
    load_yaml,
)


def load_config(path: str | Path) -> Config:
    """Load the config file and the rules beside it, or raise ``ConfigError`` with every issue."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError([_missing_file(source)])
    settings, _, issues = _load_file(source, ConfigFile)
    rules, rule_issues = _load_rules(source.parent / RULES_DIR)
    issues += rule_issues
    if settings is None or rules is None or issues:
        raise ConfigError(issues)
    return Config(**dict(settings), source=source, rules=rules)


def load_rules(config_path: str | Path) -> Rules:
    """The rules beside a config file, or ``ConfigError`` with every issue (for a reload)."""
    rules, issues = _load_rules(Path(config_path).parent / RULES_DIR)
    if rules is None or issues:
        raise ConfigError(issues)
    return rules


def check(path: str | Path) -> list[ConfigIssue]:
    """Every issue of the config and its rules, empty when all is well (``cellmon check``)."""
    try:
        load_config(path)
    except ConfigError as err:
        return err.issues
    return []


def _missing_file(source: Path) -> ConfigIssue:
    where = "" if source.is_absolute() else f" (relative to {Path.cwd()})"
    problem = "is not a file" if source.exists() else "no such file"
    return ConfigIssue(str(source), 0, "file", problem + where)


M = TypeVar("M", bound=Section)


def _load_file(path: Path, model: type[M]) -> tuple[M | None, YamlDoc | None, list[ConfigIssue]]:
    """A file validated against its model, with all of its issues in line order."""
    try:
        doc = load_yaml(path)
    except ConfigError as err:
        return None, None, err.issues
    value: M | None = None
    issues = list(doc.issues)
    try:
        value = model.model_validate({} if doc.data is None else doc.data)
    except ValidationError as err:
        issues += [_issue(model, doc, error["loc"], error) for error in err.errors()]
    return value, doc, sorted(issues, key=lambda issue: issue.line)


def _load_rules(directory: Path) -> tuple[Rules | None, list[ConfigIssue]]:
    """Merge the lists of every rules file, remembering each item's file and position there."""
    issues = [
        ConfigIssue(str(p), 0, "file", "not read: rules files end in .yaml")
        for p in sorted(directory.glob("*.yml"))
    ]
    merged: dict[str, list[Any]] = {field: [] for field in RulesFile.model_fields}
    origins: dict[str, list[tuple[YamlDoc, int]]] = {field: [] for field in merged}
    for path in sorted(directory.glob("*.yaml")):
        part, doc, found = _load_file(path, RulesFile)
        issues += found
        if part is None or doc is None:
            continue
        for field, items in merged.items():
            items += getattr(part, field)
            origins[field] += [(doc, i) for i in range(len(getattr(part, field)))]
    if issues:
        return None, issues
    try:
        return Rules(**merged), []
    except ValidationError as err:
        return None, [_merged_issue(directory, origins, error) for error in err.errors()]


def _merged_issue(
    directory: Path, origins: dict[str, list[tuple[YamlDoc, int]]], error: ErrorDetails
) -> ConfigIssue:
    """Point an error in the merged rules back to the file and line the rule came from."""
    loc = error["loc"]
    if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
        doc, i = origins[loc[0]][loc[1]]
        return _issue(RulesFile, doc, (loc[0], i, *loc[2:]), error)
    return ConfigIssue(f"{directory}/*.yaml", 0, dotted(loc), message(Rules, loc, error))


def _issue(model: type[Section], doc: YamlDoc, loc: KeyPath, error: ErrorDetails) -> ConfigIssue:
    clean = walk(model, loc)[2]
    if error["type"] == "union_tag_invalid":  # the tag is the union's ``type`` key
        clean = (*clean, "type")
    return ConfigIssue(doc.file, doc.line_of(clean), dotted(clean), message(model, loc, error))
