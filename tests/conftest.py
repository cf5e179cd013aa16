"""Real servers for the integration tests, started once per test session.

A missing server is an error, never a skip: a green run must mean the integration tests ran.

Property and fuzz tests run the ``ci`` hypothesis profile: a fixed seed and a bounded
number of examples, so every run of ``make test`` tries the same cases. For a longer hunt
on a workstation: ``HYPOTHESIS_PROFILE=long .venv/bin/pytest -k "fuzz or property"``.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import kill_leftovers
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto, ServerError, VictoriaMetrics

ServerT = TypeVar("ServerT", Mosquitto, InfluxV1, VictoriaMetrics)

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=300, derandomize=True, deadline=None, suppress_health_check=_SLOW_OK
)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=_SLOW_OK
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def serve(server: ServerT) -> Iterator[ServerT]:
    """Run a server for the fixture's lifetime; fail with its log or the install hint."""
    try:
        server.start()
    except ServerError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    yield from serve(Mosquitto(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture(scope="session")
def plant_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """Mosquitto with the queue limits a plant should set, for tests where cellmon is down."""
    directory = tmp_path_factory.mktemp("mosquitto-plant")
    yield from serve(Mosquitto(directory, extra_config=PLANT_BROKER_SETTINGS))


@pytest.fixture(scope="session")
def influx_v1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxV1]:
    yield from serve(InfluxV1(tmp_path_factory.mktemp("influxd")))


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    yield from serve(VictoriaMetrics(tmp_path_factory.mktemp("victoria-metrics")))


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxV1]:
    """An InfluxDB of the test's own, with a database ``plant``, so the test can stop it."""
    server = InfluxV1(tmp_path / "influxd")
    server.start()
    server.create_database("plant")
    yield server
    server.stop()


@pytest.fixture
def influx_db(influx_v1: InfluxV1) -> str:
    """Name of a new, empty database on the session's InfluxDB."""
    name = f"test_{uuid4().hex[:12]}"
    influx_v1.create_database(name)
    return name


@pytest.fixture(autouse=True)
def _no_leftover_pipelines() -> Iterator[None]:
    """A test that fails before stopping its ``cellmon run`` must not leave it running."""
    yield
    kill_leftovers()
