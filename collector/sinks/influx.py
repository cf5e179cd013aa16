"""``sink: {type: influx}``: InfluxDB, through the v1 ``/write`` API or the v2 client.

The ``influx:`` section (contract section 4) says where and how. The client libraries are
imported only when the sink is built: the MQTT process validates this config but never
writes to the database, so it does not load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from collector.config.schema import EnvName, HttpUrl, NonEmpty, Positive, Section
from collector.sinks.base import Sink, SinkOptions

if TYPE_CHECKING:
    from collector.config.models import Config as CellmonConfig


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


class Config(SinkOptions):
    """``sink: {type: influx}``, the default: the database of the ``influx:`` section."""

    type: Literal["influx"] = "influx"


def build(cfg: CellmonConfig) -> Sink:
    """The v1 or v2 sink of ``cfg.influx``; its token comes from the environment."""
    influx = cfg.influx
    token = cfg.secret(influx.token_env)
    if influx.api == "v1":
        from collector.sinks.influx_v1 import InfluxV1Sink

        return InfluxV1Sink(
            influx.url, influx.database, token, timeout_s=influx.timeout_s, gzip=influx.gzip
        )
    from collector.sinks.influx_v2 import InfluxV2Sink

    return InfluxV2Sink(
        influx.url, influx.bucket, influx.org, token, timeout_s=influx.timeout_s, gzip=influx.gzip
    )
