"""``sink: {type: influx}``: InfluxDB, through the v1 ``/write`` API or the v2 client.

The ``influx:`` section (contract section 4, modelled in ``collector.sinks.options``) says
where and how. The client libraries are imported only when the sink is built: the MQTT
process validates this config but never writes to the database, so it does not load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.sinks.base import Sink

if TYPE_CHECKING:
    from collector.config.models import Config as CellmonConfig


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
