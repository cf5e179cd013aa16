"""Reading a real InfluxDB 1.x back: CSV for raw samples, JSON for the rest, one meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.sinks.influxql import InfluxQL, QueryError, _as_csv
from tests.harness import write_config
from tests.servers import InfluxV1, http

pytestmark = pytest.mark.integration

T = 1_773_100_800_123_456_789
SELECT = 'SELECT "voltage_v", "current_ka" FROM "cell" WHERE time >= {} GROUP BY "cell"'


def query(tmp_path: Path, influx: InfluxV1, db: str) -> InfluxQL:
    return InfluxQL(
        load_config(write_config(tmp_path, mqtt_port=1, influx_url=influx.url, database=db))
    )


def test_a_server_answering_json_gives_the_csv_influxdb_writes(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    lines = [
        f"cell,potline=P1,cell=C\\ 1\\,a\\=b voltage_v=4.1,current_ka=300 {T}",
        f"cell,potline=P1,cell=C2 voltage_v=4.25 {T + 1}",  # no current: an empty column
        f"cell,potline=P1,cell=C2 voltage_v=3.9,current_ka=301.5 {T + 2}",
    ]
    status, body = http("POST", f"{influx_v1.url}/write?db={influx_db}", "\n".join(lines).encode())
    assert status == 204, body
    q = query(tmp_path, influx_v1, influx_db)
    table = q.csv(SELECT.format(T))
    assert table.decode().splitlines() == [
        "name,tags,time,voltage_v,current_ka",
        f'cell,"cell=C\\ 1\\,a\\=b",{T},4.1,300',  # quoted: it holds a comma
        f"cell,cell=C2,{T + 1},4.25,",
        f"cell,cell=C2,{T + 2},3.9,301.5",
    ]
    assert _as_csv(q.series(SELECT.format(T))) == table


def test_no_rows_is_an_empty_table_and_a_refusal_an_error(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    assert query(tmp_path, influx_v1, influx_db).csv(SELECT.format(T)) == b""
    with pytest.raises(QueryError, match="database not found"):
        query(tmp_path, influx_v1, "no_such_db").csv(SELECT.format(T))
