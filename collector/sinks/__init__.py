"""Where output points go: a store that accepts InfluxDB line protocol, or a file.

A new sink is a module with a class following `Sink`, plus one line in `SINKS`.
"""

from collections.abc import Callable

from collector.sinks.base import Sink, SinkError
from collector.sinks.file import FileSink
from collector.sinks.influx_v1 import InfluxV1Sink
from collector.sinks.influx_v2 import InfluxV2Sink

SINKS: dict[str, Callable[..., Sink]] = {
    "influx_v1": InfluxV1Sink,
    "influx_v2": InfluxV2Sink,
    "file": FileSink,
}

__all__ = ["SINKS", "FileSink", "InfluxV1Sink", "InfluxV2Sink", "Sink", "SinkError"]
