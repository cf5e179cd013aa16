"""The models of the rules files (``rules/*.yaml``): inputs, derived fields and alarms.

Process engineers write these, so every check here says what is wrong in their terms, at
the rule's own line; checks that need all the files (names unique, an expression reading
only what exists when it is computed) run once the files are merged, in ``Rules``.
"""

from __future__ import annotations

import difflib
import keyword
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from collector.config.inputs import FIELD_NAME, RAW_FIELDS, InputRule
from collector.config.schema import (
    LevelName,
    NonNegative,
    Positive,
    Section,
    fail,
    number,
    show,
)
from collector.config.sparkplug import SparkplugInput
from collector.config.yamlsource import KeyPath
from processors.rules.expression_syntax import (
    CELL_CONSTANTS,
    FUNCTIONS,
    SAMPLE_FIELDS,
    parse_expression,
    unknown_name_message,
    unknown_names,
)


def _field_name(value: str) -> str:
    if not FIELD_NAME.fullmatch(value) or keyword.iskeyword(value):
        msg = (
            "must be a letter then up to 63 letters, digits or '_' (it is a field name "
            f"and a name in expressions), got {value!r}"
        )
        raise ValueError(msg)
    return value


def _expression(text: str) -> str:
    """Syntax and whitelist here, on the rule's own line; names once all files are merged."""
    parse_expression(text)
    return text


FieldName = Annotated[str, AfterValidator(_field_name)]
ExpressionText = Annotated[str, AfterValidator(_expression)]
Scope = Annotated[list[LevelName], Field(min_length=1)]


class DerivedRule(Section):
    """A field computed from each sample, written with it to the raw ``cell`` measurement."""

    name: FieldName
    expr: ExpressionText
    potlines: Scope | None = None
    fields: list[FieldName] = Field(default_factory=list)


LIMITS = ("above", "below", "outside")


def _setting_limit(value: Any) -> Any:
    """A limit may name a potline setting, so a potline's targets override it."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number or (isinstance(value, str) and value in CELL_CONSTANTS):
        return value
    close = difflib.get_close_matches(value, CELL_CONSTANTS, n=1) if isinstance(value, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    msg = (
        f"expected a number or a potline setting ({', '.join(CELL_CONSTANTS)}), "
        f"got {show(value)}{hint}"
    )
    raise ValueError(msg)


Limit = Annotated[float | str, BeforeValidator(_setting_limit)]


class AlarmRule(Section):
    """A field beyond a limit for ``hold_s``, or (``stale_s``) a cell that sent nothing."""

    name: LevelName
    severity: Literal["info", "warning", "critical"] = "warning"
    field: FieldName | None = None
    above: Limit | None = None
    below: Limit | None = None
    outside: list[Limit] | None = None
    hold_s: NonNegative = 0.0
    stale_s: Positive | None = None
    potlines: Scope | None = None
    cells: Scope | None = None
    fields: list[FieldName] = Field(default_factory=list)

    @field_validator("outside")
    @classmethod
    def _band(cls, band: list[float | str] | None) -> list[float | str] | None:
        if band is None:
            return band
        numbers = [x for x in band if not isinstance(x, str)]
        if len(band) != 2 or (len(numbers) == 2 and numbers[0] >= numbers[1]):
            got = ", ".join(x if isinstance(x, str) else number(x) for x in band)
            msg = f"must be [low, high] with low < high, e.g. [940, 975], got [{got}]"
            raise ValueError(msg)
        return band

    @model_validator(mode="after")
    def _one_kind(self) -> AlarmRule:
        problems = _alarm_kind_problems(self)
        if problems:
            fail(problems, self)
        return self


def _alarm_kind_problems(alarm: AlarmRule) -> list[tuple[KeyPath, str]]:
    """An alarm is either a limit on one field or a stale alarm, and says which unambiguously."""
    given = [key for key in LIMITS if getattr(alarm, key) is not None]
    if alarm.stale_s is not None:
        keys = [k for k in ("field", *LIMITS, "hold_s", "fields") if k in alarm.model_fields_set]
        return [((k,), f"a stale alarm (stale_s) watches no field: remove {k!r}") for k in keys]
    if alarm.field is None:
        message = (
            "missing required key: an alarm watches a field (with above, below or outside), "
            "unless it is a stale alarm (stale_s)"
        )
        return [(("field",), message)]
    if not given:
        return [(("field",), "no limit: give above, below or outside: [low, high]")]
    if len(given) > 1:
        message = f"give only one of above, below, outside (found {' and '.join(given)})"
        return [((given[1],), message)]
    return []


class RulesFile(Section):
    """One ``rules/*.yaml`` file. Each file may add to any list; a new kind of rule is a list."""

    inputs: list[InputRule] = Field(default_factory=list)
    sparkplug: list[SparkplugInput] = Field(default_factory=list)
    derived: list[DerivedRule] = Field(default_factory=list)
    alarms: list[AlarmRule] = Field(default_factory=list)


class Rules(RulesFile):
    """All the rules files merged, in file-name order."""

    @model_validator(mode="after")
    def _complete(self) -> Rules:
        found = _duplicate_names(self) + _derived_problems(self) + _alarm_field_problems(self)
        problems = sorted(found, key=_rule_order)
        if not self.inputs and not self.sparkplug:
            problems.append((("inputs",), "no input rules (inputs or sparkplug): one is needed"))
        if problems:
            fail(problems, self)
        return self


RESERVED = {
    **dict.fromkeys((*SAMPLE_FIELDS, *RAW_FIELDS), "a field of the contract"),
    **dict.fromkeys(CELL_CONSTANTS, "a setting of the potline"),
    **dict.fromkeys(FUNCTIONS, "a function"),
}
NAMES_HELP = (
    f"expressions may use the sample's fields ({', '.join(SAMPLE_FIELDS)}), the potline's "
    f"settings ({', '.join(CELL_CONSTANTS)}), the derived fields above this one, and "
    "pass-through payload keys listed under 'fields'"
)


def _derived_problems(rules: Rules) -> list[tuple[KeyPath, str]]:
    """New names only; each expression reads only what exists when it is computed.

    Derived fields are computed in order (file-name order, then order in the file), so an
    expression may read those before it, and a later one is named as such in the message.
    """
    problems: list[tuple[KeyPath, str]] = []
    known = {*SAMPLE_FIELDS, *CELL_CONSTANTS}
    later = {rule.name for rule in rules.derived}
    for i, rule in enumerate(rules.derived):
        if rule.name in RESERVED:
            message = f"{rule.name!r} is {RESERVED[rule.name]}: a derived field needs a new name"
            problems.append((("derived", i, "name"), message))
        readable = known | set(rule.fields)
        for name in unknown_names(parse_expression(rule.expr), readable):
            if name == rule.name:
                message = f"{name!r} reads itself: an expression may read only earlier fields"
            elif name in later:
                message = f"{name!r} is derived after this rule: move its rule above this one"
            else:
                message = unknown_name_message(name, readable, NAMES_HELP)
            problems.append((("derived", i, "expr"), message))
        known.add(rule.name)
    return problems


def _alarm_field_problems(rules: Rules) -> list[tuple[KeyPath, str]]:
    """An alarm watches a field that samples have or that a derived rule adds."""
    problems: list[tuple[KeyPath, str]] = []
    derived = {rule.name for rule in rules.derived}
    for i, alarm in enumerate(rules.alarms):
        watchable = {*SAMPLE_FIELDS, *derived, *alarm.fields}
        if alarm.field is not None and alarm.field not in watchable:
            message = unknown_name_message(
                alarm.field,
                watchable,
                f"an alarm watches one of {', '.join(SAMPLE_FIELDS)}, a derived field, "
                "or a pass-through payload key listed under 'fields'",
                noun="field",
            )
            problems.append((("alarms", i, "field"), message))
    return problems


def _rule_order(problem: tuple[KeyPath, str]) -> tuple[int, int]:
    """Problems of the merged rules in file order, then line order, like the others."""
    field, index = problem[0][:2]
    return list(RulesFile.model_fields).index(str(field)), int(index)


def _duplicate_names(rules: RulesFile) -> list[tuple[KeyPath, str]]:
    """Every rule has a name that identifies it in logs and metrics: unique within its list."""
    problems: list[tuple[KeyPath, str]] = []
    for field in type(rules).model_fields:
        seen: set[str] = set()
        for i, rule in enumerate(getattr(rules, field)):
            if rule.name in seen:
                message = f"duplicate name {rule.name!r}: names are unique across all rules files"
                problems.append(((field, i, "name"), message))
            seen.add(rule.name)
    return problems
