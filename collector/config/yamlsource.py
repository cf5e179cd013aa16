"""YAML files read into plain data plus the line of every key, so config errors can say where.

pyyaml's constructed data forgets where each value came from, and silently keeps the last of
two equal keys; both matter to an engineer hunting a mistake in a long file over a slow
remote session. The node tree that ``yaml.compose`` builds still has the marks, so it is
walked once for lines and duplicates before the data is constructed from it.

A file is refused unread past ``MAX_FILE_BYTES``: a config is a few kilobytes, and a huge one
(a wrong path, a runaway generator) would otherwise keep ``cellmon check`` busy for minutes.
libyaml parses a good file four times faster than pure-Python pyyaml; a file it refuses is
parsed again by pyyaml, whose error wording ``SYNTAX_HINTS`` knows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]
"""Where a value sits: mapping keys as str, sequence positions as int."""

MAX_FILE_BYTES = 1 << 20
"""The largest config or rules file read; a hand-edited one is a thousand times smaller."""
FAST_LOADER: type[yaml.SafeLoader | yaml.CSafeLoader] = (
    yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
)
"""libyaml's loader where pyyaml was built with it; same nodes, marks and constructed data."""
MERGE_TAG = "tag:yaml.org,2002:merge"
DOCUMENT_KEY = "(document)"
TOO_DEEP = "nested too deeply: a config nests a few levels, not hundreds"
LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"
LONGEST_INTEGER = 4300
TOO_LONG_NUMBER = f"a number of more than {LONGEST_INTEGER} digits"
INT_TAG = "tag:yaml.org,2002:int"
SYNTAX_HINTS = (
    ("'\\t'", "indent with spaces: YAML does not allow tabs"),
    ("<block end>", "check the indentation"),
    ("mapping values are not allowed", "check the indentation, or quote a value with ': ' in it"),
)
"""pyyaml's parser wording, and what usually caused it in a hand-edited file."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config or rules file, printed as compilers do so editors can jump to it."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """Every issue of one load, so that all of them are fixed in one round."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(map(str, issues)))
        self.issues = issues


@dataclass(frozen=True, slots=True)
class YamlDoc:
    """A parsed file: its data, the 1-based line of each key, and its duplicate keys."""

    file: str
    data: Any
    lines: dict[KeyPath, int]
    issues: tuple[ConfigIssue, ...] = ()

    def line_of(self, path: KeyPath) -> int:
        """The line of a key, or of its nearest parent in the file (for a key that is missing)."""
        for end in range(len(path), 0, -1):
            if (line := self.lines.get(path[:end])) is not None:
                return line
        return self.lines[()]


def dotted(path: KeyPath) -> str:
    """A key path as an engineer writes it: ``plant.potlines[0].id``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            if not part.isprintable() or not part:  # a newline would break the issue's line
                part = repr(part)
            text += f".{part}" if text else part
    return text or DOCUMENT_KEY


def load_yaml(path: Path) -> YamlDoc:
    """Parse one file with the safe loader.

    Raises ``ConfigError`` when the file cannot be read or is not YAML; duplicate keys do not
    stop parsing (the data stays usable for further checks) and come back in ``issues``.
    """
    text = _read_text(path)
    try:
        return _parse(str(path), text)
    except yaml.YAMLError as err:
        raise ConfigError([_syntax_issue(str(path), text, err)]) from None


def _parse(file: str, text: str) -> YamlDoc:
    try:
        return _compose(file, text, FAST_LOADER)
    except yaml.YAMLError as fast:
        if LIBYAML_TOO_DEEP in str(fast):  # pyyaml would recurse for seconds, then fail
            raise
        try:
            return _compose(file, text, yaml.SafeLoader)
        except RecursionError:  # pyyaml recurses per level where libyaml stopped at its limit
            raise fast from None
    except RecursionError:
        raise ConfigError([ConfigIssue(file, 1, "yaml", TOO_DEEP)]) from None


def _compose(
    file: str, text: str, loader_class: type[yaml.SafeLoader | yaml.CSafeLoader]
) -> YamlDoc:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        lines, duplicates = _index(node, file)
        try:
            data = None if node is None else loader.construct_document(node)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as err:  # a scalar YAML resolves but pyyaml cannot build
            raise ConfigError([_unreadable(file, loader, node, err)]) from None
    finally:
        loader.dispose()
    return YamlDoc(file, data, lines, tuple(duplicates))


def _unreadable(
    file: str, loader: yaml.SafeLoader | yaml.CSafeLoader, node: yaml.Node | None, err: Exception
) -> ConfigIssue:
    """The first scalar that cannot be built, with its line.

    An integer of more than 4300 digits (Python's limit), a date that does not exist
    (``2024-02-30``), ``!!int abc``, ``!!float`` with no value (an ``IndexError`` in pyyaml).
    """
    loader.recursive_objects.clear()  # left over from the construction that failed
    for scalar in _scalars(node):
        try:
            loader.construct_object(scalar)
        except yaml.YAMLError:
            continue
        except Exception as bad:
            if scalar.tag == INT_TAG and len(scalar.value) > LONGEST_INTEGER:
                problem = TOO_LONG_NUMBER
            else:
                problem = f"cannot read {scalar.value[:40]!r} as {scalar.tag.rsplit(':', 1)[-1]}"
                problem += f": {bad}" if isinstance(bad, ValueError) else ""
            return ConfigIssue(file, scalar.start_mark.line + 1, "yaml", problem)
    return ConfigIssue(file, 1, "yaml", f"cannot read the file: {err}")


def _scalars(node: yaml.Node | None) -> list[yaml.ScalarNode]:
    """The scalars of a node tree in file order, each once (aliases may loop)."""
    found: list[yaml.ScalarNode] = []
    stack = [node] if node is not None else []
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            found.append(current)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(reversed(current.value))
        elif isinstance(current, yaml.MappingNode):
            stack.extend(n for pair in reversed(current.value) for n in reversed(pair))
    return found


def _read_text(path: Path) -> str:
    try:
        raw = _read_bytes(path)
    except OSError as err:
        raise ConfigError(
            [ConfigIssue(str(path), 0, "file", f"cannot read: {err.strerror}")]
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(str(path), line, "file", "not UTF-8 text")]) from None


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, or ``ConfigError`` when it is over the limit; no more is ever read."""
    with path.open("rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            size = max(os.fstat(f.fileno()).st_size, len(raw))  # a pipe has no size
            raise ConfigError([_oversize(str(path), size)])
    return raw


def _oversize(file: str, size: int) -> ConfigIssue:
    limit = f"{MAX_FILE_BYTES >> 20} MiB"
    message = f"file of {size} bytes exceeds the {limit} limit for a config file"
    return ConfigIssue(file, 1, "(file)", message)


def _syntax_issue(file: str, text: str, err: yaml.YAMLError) -> ConfigIssue:
    """The problem's own line, and where the construct it broke started, when pyyaml knows."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        message = err.problem or "invalid YAML"
        if err.context and err.context_mark is not None:
            message += f" ({err.context} at line {err.context_mark.line + 1})"
        message += "".join(f"; {hint}" for text, hint in SYNTAX_HINTS if text in message)
        return ConfigIssue(file, err.problem_mark.line + 1, "yaml", message)
    position = getattr(err, "position", len(text))
    line = text[:position].count("\n") + 1
    return ConfigIssue(file, line, "yaml", str(err).splitlines()[0])


def _index(node: yaml.Node | None, file: str) -> tuple[dict[KeyPath, int], list[ConfigIssue]]:
    """Line of every key path, and the duplicate keys, walking the tree before construction.

    Construction rewrites merge keys (``<<``) in place, which would make a legitimate
    override look like a duplicate; merged keys are therefore not indexed, and an error in
    one points to the mapping that merges it.
    """
    if node is None:
        return {(): 1}, []
    lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
    duplicates: list[ConfigIssue] = []
    seen: set[int] = set()
    stack: list[tuple[KeyPath, yaml.Node]] = [((), node)]
    while stack:
        path, current = stack.pop()
        if id(current) in seen:  # an alias: indexed where its anchor is, and it may loop
            continue
        seen.add(id(current))
        for child_path, child, line in _children(path, current):
            if child_path in lines:
                duplicates.append(_duplicate(file, child_path, line, lines[child_path]))
                continue
            lines[child_path] = line
            stack.append((child_path, child))
    return lines, sorted(duplicates, key=lambda issue: issue.line)


def _children(path: KeyPath, node: yaml.Node) -> list[tuple[KeyPath, yaml.Node, int]]:
    if isinstance(node, yaml.SequenceNode):
        return [((*path, i), item, item.start_mark.line + 1) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        return [
            ((*path, key.value), value, key.start_mark.line + 1)
            for key, value in node.value
            if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG
        ]
    return []


def _duplicate(file: str, path: KeyPath, line: int, first: int) -> ConfigIssue:
    message = f"duplicate key, first at line {first}: YAML would silently keep only the last"
    return ConfigIssue(file, line, dotted(path), message)
