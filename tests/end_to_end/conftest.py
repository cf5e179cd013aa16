"""The end-to-end tests of the MQTT source run once with each of its clients."""

import pytest

from tests import harness


@pytest.fixture(params=["mqtt5", "paho"])
def mqtt_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``mqtt.client`` of every config the test writes (``pytest.mark.usefixtures``)."""
    monkeypatch.setattr(harness, "MQTT_CLIENT", request.param)
    return str(request.param)
