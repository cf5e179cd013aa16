"""Sparkplug topics as the specification spells them (section 4.1)."""

from __future__ import annotations

import pytest

from collector.source.sparkplug.topics import MessageType, Topic, parse, state_topic


def test_node_and_device_topics_parse_and_print_back() -> None:
    node = parse("spBv1.0/K7/NBIRTH/K7-S1")
    assert node == Topic("K7", MessageType.NBIRTH, "K7-S1")
    device = parse("spBv1.0/K7/DDATA/K7-S1/C017")
    assert device == Topic("K7", MessageType.DDATA, "K7-S1", "C017")
    assert str(device) == "spBv1.0/K7/DDATA/K7-S1/C017"
    assert state_topic("cellmon") == "spBv1.0/STATE/cellmon"


@pytest.mark.parametrize(
    "topic",
    [
        "spBv1.0/K7/DDATA/K7-S1",  # a device message names its device
        "spBv1.0/K7/NDATA/K7-S1/C017",  # a node message names none
        "spBv1.0/K7/XDATA/K7-S1",
        "spAv1.0/K7/NDATA/K7-S1",
        "spBv1.0//NDATA/K7-S1",
        "spBv1.0/STATE/cellmon",
        "smelter/K7/C01/telemetry",
    ],
)
def test_other_topics_are_not_sparkplug_messages(topic: str) -> None:
    assert parse(topic) is None
