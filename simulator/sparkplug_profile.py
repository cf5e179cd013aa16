"""What the simulated edge gateways say in Sparkplug B: metric names, datatypes, aliases.

The JSON contract's fields become the metrics of one device per cell; the values are the
JSON mode's own (same rounding), only the units follow the gateways' habit (amperes, not
kiloamperes). Kept apart from the MQTT side so the profile reads as a table and the host
side can be checked against it.

Alias scheme: a device metric's alias is ``cell number × 100 + metric code`` (C017's
``BathTemp`` is 1703), so it is unique within the edge node, and in the whole potline,
and can be read back by a person; the node's own metrics (``bdSeq``, ``Node
Control/Rebirth``) go by name only, as hosts address them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from collector.source.sparkplug.payload import Datatype, Metric
from collector.source.sparkplug.topics import BDSEQ, REBIRTH
from simulator.payloads import Payload

ALIAS_CELL_FACTOR = 100


class Spec(NamedTuple):
    """One device metric: its name, alias code, datatype, and how a JSON object yields it."""

    name: str
    code: int
    datatype: Datatype
    key: str
    scale: float = 1.0


VOLTAGE = Spec("Voltage", 1, Datatype.DOUBLE, "cell_voltage_v")
LINE_CURRENT = Spec("LineCurrent", 2, Datatype.DOUBLE, "line_current_ka", 1000.0)
BATH_TEMP = Spec("BathTemp", 3, Datatype.FLOAT, "bath_temp_c")
NOISE = Spec("Noise", 4, Datatype.FLOAT, "noise_uohm")
ANODE_POSITION = Spec("AnodeChange/Position", 11, Datatype.INT32, "anode")
ANODE_BLOCK = Spec("AnodeChange/Block", 12, Datatype.STRING, "block")
METAL_TAP_KG = Spec("MetalTap/Kg", 21, Datatype.DOUBLE, "metal_kg")

TELEMETRY = (VOLTAGE, LINE_CURRENT, BATH_TEMP, NOISE)
EVENTS = {"anode_change": (ANODE_POSITION, ANODE_BLOCK), "metal_tap": (METAL_TAP_KG,)}
EVENT_SPECS = (ANODE_POSITION, ANODE_BLOCK, METAL_TAP_KG)


def alias(cell_number: int, spec: Spec) -> int:
    """The metric's alias: unique within the edge node (see the module's docstring)."""
    return cell_number * ALIAS_CELL_FACTOR + spec.code


def value(spec: Spec, obj: Payload) -> Any:
    """The metric's value from a JSON object; amperes rounded so no float noise is added."""
    raw = obj[spec.key]
    if spec.scale == 1.0:
        return raw
    return round(raw * spec.scale, 3)


def telemetry_specs(sample: Payload) -> tuple[Spec, ...]:
    """The telemetry metrics a sample carries: ``Noise`` only where the JSON has it."""
    return tuple(s for s in TELEMETRY if s.key in sample)


def node_birth(bd_seq: int, ts_ms: int) -> list[Metric]:
    """The NBIRTH's metrics: the session's bdSeq and the rebirth control, not requested."""
    return [
        Metric(name=BDSEQ, timestamp_ms=ts_ms, datatype=Datatype.INT64, value=bd_seq),
        Metric(name=REBIRTH, timestamp_ms=ts_ms, datatype=Datatype.BOOLEAN, value=False),
    ]


def node_death(bd_seq: int) -> list[Metric]:
    """The NDEATH's only metric: the bdSeq of the session it ends."""
    return [Metric(name=BDSEQ, datatype=Datatype.INT64, value=bd_seq)]


def device_birth(cell_number: int, sample: Payload, ts_ms: int) -> list[Metric]:
    """A DBIRTH: every metric by name, alias and datatype; events declared null."""
    current = [
        Metric(spec.name, alias(cell_number, spec), ts_ms, spec.datatype, value(spec, sample))
        for spec in telemetry_specs(sample)
    ]
    events = [
        Metric(spec.name, alias(cell_number, spec), ts_ms, spec.datatype, is_null=True)
        for spec in EVENT_SPECS
    ]
    return current + events


def device_data(cell_number: int, sample: Payload, ts_ms: int) -> list[Metric]:
    """A DDATA of one sample, by alias; the datatype types the value and stays off the wire."""
    return [_aliased(cell_number, spec, sample, ts_ms) for spec in telemetry_specs(sample)]


def event_data(cell_number: int, event: Payload, ts_ms: int) -> list[Metric]:
    """A DDATA of one anode change or metal tap, by alias."""
    return [_aliased(cell_number, spec, event, ts_ms) for spec in EVENTS[event["type"]]]


def _aliased(cell_number: int, spec: Spec, obj: Payload, ts_ms: int) -> Metric:
    return Metric(
        alias=alias(cell_number, spec),
        timestamp_ms=ts_ms,
        datatype=spec.datatype,
        value=value(spec, obj),
    )
