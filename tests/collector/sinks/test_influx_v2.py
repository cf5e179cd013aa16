"""InfluxV2Sink against VictoriaMetrics, which serves `/api/v2/write` like InfluxDB 2.x.

VictoriaMetrics stores `meas,tag=v field=1` as the series `meas_field{tag="v"}`, in
milliseconds, numbers only; see tests.servers.VictoriaMetrics for all its differences.
"""

from contextlib import closing
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from collector.sinks.base import SinkError
from collector.sinks.influx_v2 import InfluxV2Sink
from tests.servers import VictoriaMetrics

# 2023-11-14T22:13:20.123456789Z and one minute and one nanosecond later.
T0 = 1_700_000_000_123_456_789
T1 = 1_700_000_060_123_456_790
# The same instants as VictoriaMetrics keeps them: milliseconds, the rest cut off.
T0_MS = 1_700_000_000_123
T1_MS = 1_700_000_060_123

C01 = '{cell="C01",potline="P1"}'
C02 = '{cell="C02",potline="P1"}'


@pytest.fixture
def measurement() -> str:
    """A measurement no other test writes: VictoriaMetrics has no databases to keep tests apart."""
    return f"m{uuid4().hex[:10]}"


def cells(measurement: str) -> bytes:
    return (
        f"{measurement},potline=P1,cell=C01 "
        f'voltage_v=4.213,anode=7i,complete=true,note="tap" {T0}\n'
        f"{measurement},potline=P1,cell=C02 voltage_v=4.187,anode=12i,complete=false {T1}\n"
    ).encode()


def stored(victoria: VictoriaMetrics, measurement: str) -> dict[str, list[tuple[int, float]]]:
    """Return the measurement's series as 'field{label="value",...}' -> [(ms, value), ...]."""
    return {
        series_name(item["metric"], measurement): list(
            zip(item["timestamps"], item["values"], strict=True)
        )
        for item in victoria.export(f'{{__name__=~"{measurement}_.*"}}')
    }


def series_name(metric: dict[str, Any], measurement: str) -> str:
    labels = ",".join(
        f'{key}="{value}"' for key, value in sorted(metric.items()) if key != "__name__"
    )
    return metric["__name__"].removeprefix(f"{measurement}_") + "{" + labels + "}"


def sink_for(url: str, gzip: bool = True) -> InfluxV2Sink:
    return InfluxV2Sink(url, "cellmon", "smelter", None, timeout_s=10.0, gzip=gzip)


@pytest.mark.integration
@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_write_stores_every_number(victoria: VictoriaMetrics, measurement: str, gzip: bool) -> None:
    with closing(sink_for(victoria.url, gzip=gzip)) as sink:
        sink.write(cells(measurement))

    assert stored(victoria, measurement) == {
        "voltage_v" + C01: [(T0_MS, 4.213)],
        "voltage_v" + C02: [(T1_MS, 4.187)],
        "anode" + C01: [(T0_MS, 7.0)],
        "anode" + C02: [(T1_MS, 12.0)],
        "complete" + C01: [(T0_MS, 1.0)],
        "complete" + C02: [(T1_MS, 0.0)],
        "note" + C01: [(T0_MS, 0.0)],  # VictoriaMetrics keeps no strings
    }


@pytest.mark.integration
def test_writing_the_same_point_twice_leaves_one(
    victoria: VictoriaMetrics, measurement: str
) -> None:
    point = f"{measurement},potline=P1,period=day energy_kwh=12.25 {T0}".encode()
    with closing(sink_for(victoria.url)) as sink:
        sink.write(point)
        sink.write(point)

    assert stored(victoria, measurement) == {
        'energy_kwh{period="day",potline="P1"}': [(T0_MS, 12.25)]
    }


@pytest.mark.integration
def test_malformed_line_is_skipped_without_an_error(
    victoria: VictoriaMetrics, measurement: str
) -> None:
    """Unlike InfluxDB, VictoriaMetrics answers 204 and only logs the line it dropped."""
    lines = f"{measurement},cell=C01 voltage_v=4.25 {T0}\n{measurement},cell=C02 voltage_v= {T1}\n"
    with closing(sink_for(victoria.url)) as sink:
        sink.write(lines.encode())

    assert stored(victoria, measurement) == {'voltage_v{cell="C01"}': [(T0_MS, 4.25)]}


@pytest.mark.integration
def test_refused_request_is_not_retryable(victoria: VictoriaMetrics, measurement: str) -> None:
    with (
        closing(sink_for(f"{victoria.url}/no-such-prefix")) as sink,
        pytest.raises(SinkError) as err,
    ):
        sink.write(cells(measurement))

    assert err.value.retryable is False
    assert str(err.value).startswith("HTTP 400: ")
    assert 'unsupported path requested: "/no-such-prefix/api/v2/write"' in str(err.value)


@pytest.mark.integration
def test_stopped_server_is_retryable_and_the_sink_recovers(
    tmp_path: Path, measurement: str
) -> None:
    first, second = cells(measurement).splitlines()
    with VictoriaMetrics(tmp_path) as server, closing(sink_for(server.url)) as sink:
        sink.write(first)
        server.stop()
        with pytest.raises(SinkError) as err:
            sink.write(second)
        server.start()
        sink.write(second)

        assert err.value.retryable is True
        assert server.url in str(err.value)
        assert stored(server, measurement) == {
            "voltage_v" + C01: [(T0_MS, 4.213)],
            "voltage_v" + C02: [(T1_MS, 4.187)],
            "anode" + C01: [(T0_MS, 7.0)],
            "anode" + C02: [(T1_MS, 12.0)],
            "complete" + C01: [(T0_MS, 1.0)],
            "complete" + C02: [(T1_MS, 0.0)],
            "note" + C01: [(T0_MS, 0.0)],
        }
