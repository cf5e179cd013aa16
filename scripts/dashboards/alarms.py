"""The alarm tables and counts of the overview and the cell board.

An alarm is a series of the ``alarm`` measurement: a potline's cell, rule and severity. A
rules change that alters an alarm's severity clears it under the old one, so only the series
of the new severity can stand.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

ALARM_SERIES = 'GROUP BY "cell", "rule", "severity"'


def last_transitions(where: str) -> str:
    """Each alarm's last transition in the range, with its value."""
    return (
        f'SELECT last("state") AS "state", "value" FROM "alarm" WHERE {where} AND $timeFilter '
        + ALARM_SERIES
    )


def alarms_standing(where: str) -> str:
    """How many alarms stand: last transitions that left them raised (none: no rows)."""
    last = f'SELECT last("state") AS "state" FROM "alarm" WHERE {where} AND $timeFilter'
    raised = "\"state\" = 'raised'"
    return f'SELECT count("state") AS "alarms" FROM ({last} {ALARM_SERIES}) WHERE {raised}'


def _by_text(colours: dict[str, str]) -> model.DynamicConfigValue:
    """Each text its colour, in the order given (Grafana's value mapping)."""
    options = {
        text: model.ValueMappingResult(color=colour, index=k)
        for k, (text, colour) in enumerate(colours.items())
    }
    return model.DynamicConfigValue(id_val="mappings", value=[model.ValueMap(options=options)])


def state_colours(panel: table.Panel) -> table.Panel:
    """A raised alarm red, a cleared one green (the cell's background); severity by colour."""
    state = _by_text({"raised": "red", "cleared": "green"})
    severity = _by_text({"critical": "red", "warning": "orange", "info": "blue"})
    background = common.TableColoredBackgroundCellOptions()
    text = common.TableColorTextCellOptions()
    return panel.override_by_name(
        "state", [state, model.DynamicConfigValue(id_val="custom.cellOptions", value=background)]
    ).override_by_name(
        "severity", [severity, model.DynamicConfigValue(id_val="custom.cellOptions", value=text)]
    )


def only_raised() -> model.DataTransformerConfig:
    """Of each alarm's last transition, those that left it raised: the alarms standing now."""
    keep = {"fieldName": "state", "config": {"id": "equal", "options": {"value": "raised"}}}
    return model.DataTransformerConfig(
        id_val="filterByValue",
        options={"type": "include", "match": "any", "filters": [keep]},
    )
