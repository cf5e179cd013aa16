"""What every board shares: the InfluxQL data source, its queries, and the panels' defaults.

The SDK has typed builders for the panels but none for an InfluxDB query (it covers
Prometheus, Loki, Elasticsearch …), so the InfluxQL target and the InfluxDB annotation
are small typed models of their own here, in the SDK's terms: a ``Dataquery`` variant and
an ``AnnotationQuery`` with the two fields the InfluxDB data source reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import dashboard as build
from grafana_foundation_sdk.builders import gauge, histogram, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

DS = model.DataSourceRef(type_val="influxdb", uid="cellmon-influxql")
"""The provisioned InfluxQL data source (config/grafana/provisioning/datasources)."""
POTLINE = '"potline" =~ /^$potline$/'
CELL = '"cell" =~ /^$cell$/'

T = TypeVar("T")


class Ready(cogbuilder.Builder[T]):
    """A model made whole, handed where the SDK asks for a builder of it."""

    def __init__(self, value: T) -> None:
        self._value = value

    def build(self) -> T:
        """The model as given: the SDK builds it at once, and may build it more than once."""
        return self._value


class InfluxQL(cogvariants.Dataquery):
    """A raw InfluxQL target: the query text as written, not the visual editor's parts.

    ``table`` keeps a row per series and time (tables, and the config query of thresholds);
    otherwise each series is a line.
    """

    def __init__(self, ref_id: str, query: str, *, table: bool = False) -> None:
        self.ref_id = ref_id
        self.query = query
        self.table = table

    def to_json(self) -> dict[str, object]:
        """The target as the InfluxDB data source saves it in a board."""
        return {
            "refId": self.ref_id,
            "datasource": DS,
            "rawQuery": True,
            "query": self.query,
            "resultFormat": "table" if self.table else "time_series",
        }


def query(ref_id: str, text: str, *, table: bool = False) -> Ready[InfluxQL]:
    return Ready(InfluxQL(ref_id, text, table=table))


class InfluxQLAnnotation(model.AnnotationQuery):
    """Events from an InfluxQL query, its ``text`` column the label.

    The InfluxDB data source reads ``query`` and ``textColumn``, which the SDK's annotation
    model does not have.
    """

    def __init__(self, name: str, query: str, colour: str) -> None:
        super().__init__(name=name, datasource=DS, enable=True, icon_color=colour)
        self.query = query

    def to_json(self) -> dict[str, object]:
        """The SDK's annotation with the data source's two fields."""
        return {**super().to_json(), "query": self.query, "textColumn": "text"}


def annotation(name: str, text: str, colour: str) -> Ready[model.AnnotationQuery]:
    """Events drawn over every time series of the board."""
    return Ready(InfluxQLAnnotation(name, text, colour))


def variable(name: str, text: str) -> build.QueryVariable:
    """One value at a time, the list read again when the board opens."""
    return (
        build.QueryVariable(name)
        .datasource(DS)
        .query(text)
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .include_all(False)
        .multi(False)
    )


def potline_variable() -> build.QueryVariable:
    return variable("potline", 'SHOW TAG VALUES FROM "sec_potline" WITH KEY = "potline"')


def cell_variable() -> build.QueryVariable:
    return variable("cell", f'SHOW TAG VALUES FROM "cell" WITH KEY = "cell" WHERE {POTLINE}')


def at(x: int = 0, y: int = 0, w: int = 12, h: int = 8) -> model.GridPos:
    """A panel's place on the 24-column grid; half the width and 8 rows unless told."""
    return model.GridPos(x=x, y=y, w=w, h=h)


class InfluxPanel(Protocol):
    """What the SDK's panel builders have in common and the boards set on every panel."""

    def title(self, title: str, /) -> Self:
        """Shown in the panel's header."""

    def datasource(self, datasource: model.DataSourceRef, /) -> Self:
        """The panel's data source: its targets' too, here always the same."""

    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery], /) -> Self:
        """One more query; Grafana draws them in the order added."""

    def unit(self, unit: str, /) -> Self:
        """How Grafana formats every field's values (a unit id, or ``suffix: …``)."""

    def grid_pos(self, grid_pos: model.GridPos, /) -> Self:
        """Where the panel sits: the SDK's own layout moves only panels left at 0, 0."""

    def thresholds(self, thresholds: cogbuilder.Builder[model.ThresholdsConfig], /) -> Self:
        """Colour steps by value."""

    def color_scheme(self, color: cogbuilder.Builder[model.FieldColor], /) -> Self:
        """How values take their colour: by the thresholds, here."""


P = TypeVar("P", bound=InfluxPanel)


def _influxql(
    panel: P, title: str, queries: Sequence[str], unit: str, place: model.GridPos, table: bool
) -> P:
    """The panel's title, data source, targets A, B, … in order, unit and place."""
    panel = panel.title(title).datasource(DS).unit(unit).grid_pos(place)
    for k, text in enumerate(queries):
        panel = panel.with_target(query(chr(ord("A") + k), text, table=table))
    return panel


def stat_panel(title: str, *queries: str, unit: str = "none", place: model.GridPos) -> stat.Panel:
    return _influxql(stat.Panel(), title, queries, unit, place, table=False)


def gauge_panel(title: str, *queries: str, unit: str = "none", place: model.GridPos) -> gauge.Panel:
    return _influxql(gauge.Panel(), title, queries, unit, place, table=False)


def histogram_panel(
    title: str, *queries: str, unit: str = "none", place: model.GridPos
) -> histogram.Panel:
    return _influxql(histogram.Panel(), title, queries, unit, place, table=False)


def timeseries_panel(
    title: str, *queries: str, unit: str = "none", place: model.GridPos
) -> timeseries.Panel:
    return _influxql(timeseries.Panel(), title, queries, unit, place, table=False)


def table_panel(title: str, *queries: str, unit: str = "none", place: model.GridPos) -> table.Panel:
    """A table: its queries keep a row per series and time."""
    return _influxql(table.Panel(), title, queries, unit, place, table=True)


def coloured(panel: P, *steps: tuple[str, float | None]) -> P:
    """Colour the panel by absolute thresholds: each step's colour from its value up.

    The first step's value is None, Grafana's −∞.
    """
    thresholds = model.ThresholdsConfig(
        mode=model.ThresholdsMode.ABSOLUTE,
        steps=[model.Threshold(value=value, color=colour) for colour, value in steps],
    )
    return panel.thresholds(Ready(thresholds)).color_scheme(by_thresholds())


def by_thresholds() -> Ready[model.FieldColor]:
    return Ready(model.FieldColor(mode=model.FieldColorModeId.THRESHOLDS))


def red_from(value: float) -> tuple[tuple[str, float | None], tuple[str, float | None]]:
    """Green below ``value``, red from it."""
    return ("green", None), ("red", value)


TODAY = "now/d"
"""Grafana's "Today so far": a panel's range from local midnight to now, whatever the board's."""
THIS_MONTH = "now/M"
""""This month so far": from the local first of the month, where its month point is stamped."""
MONTHS = "now-12M/M"
"""The twelve months before this one and this one so far: monthly series."""


def board(
    uid: str,
    title: str,
    panels: Sequence[cogbuilder.Builder[model.Panel]],
    variables: Sequence[build.QueryVariable] = (),
    annotations: Sequence[cogbuilder.Builder[model.AnnotationQuery]] = (),
) -> model.Dashboard:
    """A board of the cellmon folder: the last 7 days, refreshed every minute.

    In the browser's timezone: the operators' browsers are in the plant's, where the KPI
    periods begin. Panels are numbered in the order given.
    """
    built = (
        build.Dashboard(title)
        .uid(uid)
        .tags(["cellmon"])
        .timezone("browser")
        .time("now-7d", "now")
        .refresh("1m")
        .variables(list(variables))
        .annotations(list(annotations))
    )
    for panel in panels:
        built = built.with_panel(panel)
    out = built.build()
    for k, panel_model in enumerate(out.panels or [], start=1):
        panel_model.id_val = k
    return out
