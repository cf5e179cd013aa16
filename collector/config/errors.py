"""From pydantic's wording to the engineer's: each validation error as one plain sentence.

The engineer edits YAML, not Python: an error says what the key must be, suggests the key
that was meant, and never echoes a value that may be a secret.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from collector.config.schema import HUGE_BITS, number, show
from collector.config.yamlsource import KeyPath

EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def message(model: type[BaseModel], loc: KeyPath, error: ErrorDetails) -> str:
    """The engineer's wording of one pydantic error at ``loc`` of ``model``."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error["input"]
    holder, field, _ = walk(model, loc)
    secret_key = str(loc[-1] if loc else "").endswith("_env")  # its value may be a secret
    got = "" if secret_key else f", got {show(value)}"
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return _unknown_key(str(loc[-1]), holder)
    if kind in EXPECTED:
        return f"expected {EXPECTED[kind]}{got}{'' if secret_key else _quote_hint(kind, value)}"
    if kind in BOUND_ERRORS:
        return f"must be {_bounds(field, ctx)}{got}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}{got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "finite_number":
        return f"must be a finite number{got}"
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "union_tag_invalid":
        return f"must be one of {ctx['expected_tags']}, got {show(ctx['tag'])}"
    return error["msg"]


def _quote_hint(kind: str, value: Any) -> str:
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        huge = isinstance(value, int) and value.bit_length() > HUGE_BITS  # no text to quote
        return "" if huge else f' (write it in quotes: "{value}")'
    return ""


REPLACED = {
    "anode_response": (
        "replaced in version 1.2 by targets.anode_settle_band_mv (mV) and "
        "targets.anode_settle_max_min (the settling after an anode change, contract 6.3): "
        "remove the section"
    ),
}
"""Keys of an earlier release, refused with what took their place."""


def _unknown_key(key: str, holder: type[BaseModel] | None) -> str:
    """Typos are the commonest mistake in a config: suggest the key that was meant."""
    if key in REPLACED and holder is not None and key not in holder.model_fields:
        return REPLACED[key]
    names = list(holder.model_fields) if holder else []
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of: {', '.join(names)}" if names else "unknown key"


def _bounds(field: FieldInfo | None, ctx: dict[str, Any]) -> str:
    """All the bounds of a field, so ``0 < x <= 1`` reads as one rule, not two errors."""
    found = {
        n: v
        for n, _ in BOUNDS
        for m in (field.metadata if field else [])
        if (v := getattr(m, n, None)) is not None
    }
    if not found:
        found = {n: ctx[n] for n, _ in BOUNDS if n in ctx}
    return " and ".join(f"{symbol} {number(found[n])}" for n, symbol in BOUNDS if n in found)


def walk(
    model: type[BaseModel], loc: KeyPath
) -> tuple[type[BaseModel] | None, FieldInfo | None, KeyPath]:
    """The model holding the last key of ``loc``, that key's field, and ``loc`` as in the file.

    A tagged union (``sink``, keyed by ``type``) puts the tag in pydantic's location; it is
    followed into its member and left out of the key path the engineer sees.
    """
    holder: type[BaseModel] | None = None
    field: FieldInfo | None = None
    current: Any = model
    clean: list[str | int] = []
    for k, part in enumerate(loc):
        current = _unwrap(current)
        members = _tagged(current)
        if isinstance(part, str) and part in members:
            current = members[part]
            continue
        clean.append(part)
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if get_origin(current) is list and args else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None, None, (*clean, *loc[k + 1 :])
        holder, field = current, current.model_fields.get(part)
        current = field.annotation if field else None
    return holder, field, tuple(clean)


def _tagged(annotation: Any) -> dict[str, Any]:
    """The members of a tagged union by tag, or nothing for any other annotation."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return {}
    members = {}
    for arg in get_args(annotation):
        if get_origin(arg) is Annotated:
            tags = [m.tag for m in get_args(arg)[1:] if isinstance(m, Tag)]
            if tags:
                members[tags[0]] = get_args(arg)[0]
    return members


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and from ``X | None``."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation
