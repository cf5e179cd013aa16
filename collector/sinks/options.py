"""The ``sink:`` and ``influx:`` sections, and the registry of sink types they are keyed by.

They sit apart from the sinks: the config is validated (also in the MQTT process, which
never writes to the database) from these models alone, and the sinks are built from the
validated config, so the sinks may know the config without the config knowing the sinks.
"""

from __future__ import annotations

from typing import Literal

from collector.config.schema import Count, EnvName, HttpUrl, NonEmpty, Positive, Section


class SinkOptions(Section):
    """How points leave the journal, for every sink; each sink type adds its own keys.

    ``shutdown_s`` bounds a stop while the database refuses writes: the points it did not
    take stay in the journal for the next start, and ``cellmon run`` exits 3 to say so.
    """

    type: str
    batch_lines: Count = 5000
    flush_interval_s: Positive = 0.5
    max_buffer_mib: Positive = 1024.0
    retry_max_s: Positive = 30.0
    shutdown_s: Positive = 20.0


class InfluxConfig(Section):
    """Where results go. v2 serves InfluxDB 2.x/3.x and 1.8+; v1 is the 1.x ``/write`` API."""

    url: HttpUrl = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v2"
    database: NonEmpty = "cellmon"
    bucket: NonEmpty = "cellmon"
    org: NonEmpty = "smelter"
    token_env: EnvName | None = "INFLUX_TOKEN"
    timeout_s: Positive = 10.0
    gzip: bool = True


class InfluxOptions(SinkOptions):
    """``sink: {type: influx}``, the default: the database of the ``influx:`` section."""

    type: Literal["influx"] = "influx"


class FileOptions(SinkOptions):
    """``sink: {type: file}``: line protocol appended to ``path`` in the state directory."""

    type: Literal["file"]
    path: NonEmpty = "points.lp"


SINK_OPTIONS: dict[str, type[SinkOptions]] = {
    "influx": InfluxOptions,
    "file": FileOptions,
}
"""The ``sink:`` section of each type; ``collector.build.SINKS`` builds each type's sink."""
DEFAULT_SINK = "influx"
