"""Where output points go: the sink registry.

A sink is a module with its ``Config`` (the ``sink:`` section, keyed by ``type``) and a
``build(cfg)``, following ``collector.sinks.base.SinkPlugin``; adding one is that module
plus one line here. The config's ``sink`` union is made from this registry.
"""

from collector.sinks import file, influx
from collector.sinks.base import SinkPlugin

SINKS: dict[str, SinkPlugin] = {
    "influx": influx,
    "file": file,
}
DEFAULT_SINK = "influx"
