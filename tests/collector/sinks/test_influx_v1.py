from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from collector.sinks.base import SinkError
from collector.sinks.influx_v1 import InfluxV1Sink
from tests.servers import InfluxV1

# 2023-11-14T22:13:20.123456789Z and one minute and one nanosecond later.
T0 = 1_700_000_000_123_456_789
T1 = 1_700_000_060_123_456_790

CELLS = (
    "cell,potline=P1,cell=C01 "
    f'voltage_v=4.213,anode=7i,complete=true,note="tap \\"A\\" done" {T0}\n'
    f'cell,potline=P1,cell=C02 voltage_v=4.187,anode=12i,complete=false,note="ok" {T1}\n'
).encode()
CELL_ROWS = [
    {
        "time": T0,
        "potline": "P1",
        "cell": "C01",
        "voltage_v": 4.213,
        "anode": 7,
        "complete": True,
        "note": 'tap "A" done',
    },
    {
        "time": T1,
        "potline": "P1",
        "cell": "C02",
        "voltage_v": 4.187,
        "anode": 12,
        "complete": False,
        "note": "ok",
    },
]


def v1_sink(
    url: str, database: str, token: str | None = None, *, gzip: bool = True
) -> InfluxV1Sink:
    """The sink as the config's defaults build it (timeout 10 s, gzip)."""
    return InfluxV1Sink(url, database, token, timeout_s=10.0, gzip=gzip)


@pytest.fixture
def influx_v1_auth(tmp_path: Path) -> Iterator[InfluxV1]:
    with InfluxV1(tmp_path, admin="admin:s3cret") as server:
        server.create_database("cellmon")
        yield server


@pytest.mark.integration
@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_write_stores_every_value_exactly(influx_v1: InfluxV1, influx_db: str, gzip: bool) -> None:
    with closing(v1_sink(influx_v1.url, influx_db, gzip=gzip)) as sink:
        sink.write(CELLS)

    assert influx_v1.query("SELECT * FROM cell", influx_db) == CELL_ROWS


@pytest.mark.integration
def test_rewriting_a_point_updates_it_in_place(influx_v1: InfluxV1, influx_db: str) -> None:
    with closing(v1_sink(influx_v1.url, influx_db)) as sink:
        sink.write(f"sec_cell,cell=C01,period=day energy_kwh=10.5 {T0}".encode())
        sink.write(f"sec_cell,cell=C01,period=day energy_kwh=12.25,complete=true {T0}".encode())

    assert influx_v1.query("SELECT * FROM sec_cell", influx_db) == [
        {"time": T0, "cell": "C01", "period": "day", "energy_kwh": 12.25, "complete": True}
    ]


@pytest.mark.integration
def test_bad_line_protocol_is_not_retryable(influx_v1: InfluxV1, influx_db: str) -> None:
    with closing(v1_sink(influx_v1.url, influx_db)) as sink, pytest.raises(SinkError) as err:
        sink.write(b"cell,potline=P1 voltage_v=\n")

    assert err.value.retryable is False
    assert "HTTP 400" in str(err.value)
    assert "unable to parse 'cell,potline=P1 voltage_v=': missing field value" in str(err.value)


@pytest.mark.integration
def test_rejected_batch_keeps_its_good_lines(influx_v1: InfluxV1, influx_db: str) -> None:
    """InfluxDB 1.x writes what it can parse and answers 400 "partial write"."""
    with closing(v1_sink(influx_v1.url, influx_db)) as sink, pytest.raises(SinkError) as err:
        sink.write(
            f"cell,cell=C01 voltage_v=4.25 {T0}\ncell,cell=C02 voltage_v=oops {T1}\n".encode()
        )

    assert err.value.retryable is False
    assert "partial write" in str(err.value)
    assert influx_v1.query("SELECT * FROM cell", influx_db) == [
        {"time": T0, "cell": "C01", "voltage_v": 4.25}
    ]


@pytest.mark.integration
def test_missing_database_is_retryable(influx_v1: InfluxV1) -> None:
    with (
        closing(v1_sink(influx_v1.url, "not_created")) as sink,
        pytest.raises(SinkError) as err,
    ):
        sink.write(CELLS)

    assert err.value.retryable is True
    assert str(err.value) == 'HTTP 404: database not found: "not_created"'


@pytest.mark.integration
def test_stopped_server_is_retryable_and_the_sink_recovers(tmp_path: Path) -> None:
    with InfluxV1(tmp_path) as server, closing(v1_sink(server.url, "cellmon")) as sink:
        server.create_database("cellmon")
        sink.write(CELLS.splitlines()[0])
        server.stop()
        with pytest.raises(SinkError) as err:
            sink.write(CELLS.splitlines()[1])
        server.start()
        sink.write(CELLS.splitlines()[1])

        assert err.value.retryable is True
        assert server.url in str(err.value)
        assert server.query("SELECT * FROM cell", "cellmon") == CELL_ROWS


@pytest.mark.integration
def test_token_authenticates_as_that_user(influx_v1_auth: InfluxV1) -> None:
    with closing(v1_sink(influx_v1_auth.url, "cellmon", token="admin:s3cret")) as sink:
        sink.write(CELLS)

    assert influx_v1_auth.query("SELECT * FROM cell", "cellmon") == CELL_ROWS


@pytest.mark.integration
@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("admin:wrong", "HTTP 401: authorization failed"),
        (None, "HTTP 401: unable to parse authentication credentials"),
    ],
    ids=["wrong-password", "no-token"],
)
def test_refused_credentials_are_retryable(
    influx_v1_auth: InfluxV1, token: str | None, error: str
) -> None:
    """Someone can fix the credentials while the batch waits; it must not be dropped."""
    with (
        closing(v1_sink(influx_v1_auth.url, "cellmon", token=token)) as sink,
        pytest.raises(SinkError) as err,
    ):
        sink.write(CELLS)

    assert err.value.retryable is True
    assert str(err.value) == error


def test_token_must_be_user_and_password() -> None:
    with pytest.raises(ValueError, match='"user:password"'):
        v1_sink("http://127.0.0.1:8086", "cellmon", token="just-a-token")
