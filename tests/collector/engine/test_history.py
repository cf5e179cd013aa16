"""History read back from a real InfluxDB 1.x, written as the sink writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.engine.history import History
from collector.sinks.influxql import InfluxQL, QueryError
from tests.harness import write_config
from tests.servers import InfluxV1, http

pytestmark = pytest.mark.integration

T = 1_773_100_800_123_456_789  # nanoseconds a float cannot hold


def query(tmp_path: Path, influx: InfluxV1, db: str) -> InfluxQL:

    return InfluxQL(
        load_config(write_config(tmp_path, mqtt_port=1, influx_url=influx.url, database=db))
    )


def write(influx: InfluxV1, db: str, lines: list[str]) -> None:

    status, body = http("POST", f"{influx.url}/write?db={db}", "\n".join(lines).encode())
    assert status == 204, body


def test_samples_come_back_in_time_order_with_their_nanoseconds(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    write(
        influx_v1,
        influx_db,
        [
            f"cell,potline=P1,cell=C2 voltage_v=4.2,current_ka=300 {T + 2}",
            f"cell,potline=P1,cell=C1 voltage_v=4.1,current_ka=300 {T + 1}",
            f"cell,potline=P1,cell=C1 voltage_v=4.0,current_ka=301 {T}",
            f"cell,potline=P1,cell=C1 bath_temp_c=955 {T + 3}",  # no voltage: not a sample
            f"cell,potline=P2,cell=C1 voltage_v=9,current_ka=9 {T}",  # another potline
            f"cell,potline=P1,cell=C1 voltage_v=4.3,current_ka=300 {T + 10}",  # past the end
        ],
    )
    batch = History(query(tmp_path, influx_v1, influx_db)).samples("P1", T, T + 10)
    names = [batch.cells[c] for c in batch.cell_id.tolist()]
    assert names == [("P1", "C1"), ("P1", "C1"), ("P1", "C2")]
    assert batch.ts_ns.tolist() == [T, T + 1, T + 2]
    assert batch.voltage_v.tolist() == [4.0, 4.1, 4.2]
    assert batch.current_ka.tolist() == [301.0, 300.0, 300.0]


def test_cell_names_that_need_escaping_come_back_whole(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    # line protocol escapes a tag's comma, equals sign and space; so does a series key
    write(
        influx_v1,
        influx_db,
        [
            f"cell,potline=P1,cell=C\\ 1\\,a\\=b voltage_v=4.1,current_ka=300 {T}",
            f"cell,potline=P1,cell=炉7 voltage_v=4.2,current_ka=301.5 {T + 1}",
            f"cell,potline=P1,cell=C\\ 1\\,a\\=b voltage_v=4.3,current_ka=302 {T + 2}",
        ],
    )
    history = History(query(tmp_path, influx_v1, influx_db))
    batch = history.samples("P1", T, T + 10)
    names = [batch.cells[c][1] for c in batch.cell_id.tolist()]
    assert names == ["C 1,a=b", "炉7", "C 1,a=b"]
    assert batch.voltage_v.tolist() == [4.1, 4.2, 4.3]
    assert batch.current_ka.tolist() == [300.0, 301.5, 302.0]
    one = history.samples("P1", T, T + 10, cells=["C 1,a=b"])
    assert one.ts_ns.tolist() == [T, T + 2]


def test_a_window_without_samples_is_an_empty_batch(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    write(influx_v1, influx_db, [f"cell,potline=P1,cell=C1 voltage_v=4.1,current_ka=300 {T}"])
    history = History(query(tmp_path, influx_v1, influx_db))
    assert len(history.samples("P1", T + 1, T + 10)) == 0
    assert len(history.samples("P2", T, T + 10)) == 0


def test_events_come_back_as_the_processors_read_them(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    write(
        influx_v1,
        influx_db,
        [
            f'cell_event,potline=P1,cell=C1,type=anode_change anode=12,block="590" {T + 5}',
            f"cell_event,potline=P1,cell=C1,type=metal_tap metal_kg=1500 {T}",
            f"cell_event,potline=P1,cell=C3,type=note seen=true {T + 1}",
        ],
    )
    events = History(query(tmp_path, influx_v1, influx_db)).events("P1", T, T + 10)
    assert [(e.cell, e.ts_ns, e.type, e.data) for e in events] == [
        ("C1", T, "metal_tap", {"metal_kg": 1500.0}),
        ("C3", T + 1, "note", {}),
        ("C1", T + 5, "anode_change", {"anode": 12, "block": "590"}),
    ]


def test_a_missing_database_is_an_error_not_an_empty_history(
    tmp_path: Path, influx_v1: InfluxV1
) -> None:
    with pytest.raises(QueryError, match="database not found"):
        History(query(tmp_path, influx_v1, "no_such_db")).samples("P1", T, T + 10)


def test_day_points_and_one_type_of_event_for_a_month_summed_from_its_days(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    write(
        influx_v1,
        influx_db,
        [
            f"sec_cell,potline=P1,cell=C1,period=day energy_kwh=10,complete=true {T}",
            f"sec_cell,potline=P1,cell=C1,period=shift energy_kwh=5 {T}",  # not a day
            f"sec_cell,potline=P2,cell=C1,period=day energy_kwh=7 {T}",  # another potline
            f"cell_event,potline=P1,cell=C1,type=metal_tap metal_kg=1500 {T}",
            f'cell_event,potline=P1,cell=C1,type=anode_change anode=1,block="590" {T + 1}',
        ],
    )
    history = History(query(tmp_path, influx_v1, influx_db))
    (day,) = history.days("sec_cell", "P1", T, T + 10)
    assert day.time_ns == T
    assert dict(day.tags) == {"potline": "P1", "cell": "C1", "period": "day"}
    assert day.fields == {"energy_kwh": 10, "complete": True}
    taps = history.events("P1", T, T + 10, "metal_tap")
    assert [(e.type, e.data) for e in taps] == [("metal_tap", {"metal_kg": 1500.0})]


def test_each_window_gets_its_own_cells_samples_in_the_order_asked(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    """C1, C2 and C4 share a window (one query for the three), C3 has its own; C4 sent
    nothing in it, and C1's sample after its window is not in it."""
    write(
        influx_v1,
        influx_db,
        [
            f"cell,potline=P1,cell=C1 voltage_v=4.1,current_ka=300 {T}",
            f"cell,potline=P1,cell=C2 voltage_v=4.2,current_ka=301 {T + 1}",
            f"cell,potline=P1,cell=C1 voltage_v=4.3,current_ka=302 {T + 2}",
            f"cell,potline=P1,cell=C3 voltage_v=4.4,current_ka=303 {T + 5}",
            f"cell,potline=P1,cell=C1 voltage_v=4.5,current_ka=304 {T + 20}",
        ],
    )
    history = History(query(tmp_path, influx_v1, influx_db))
    windows = [
        (("P1", "C2"), T, T + 10),
        (("P1", "C3"), T + 4, T + 6),
        (("P1", "C1"), T, T + 10),
        (("P1", "C4"), T, T + 10),
    ]
    got = [
        (b.cells, b.cell_id.tolist(), b.ts_ns.tolist(), b.voltage_v.tolist(), b.current_ka.tolist())
        for b in history.each(windows)
    ]
    assert got[0] == ([("P1", "C2")], [0], [T + 1], [4.2], [301.0])
    assert got[1] == ([("P1", "C3")], [0], [T + 5], [4.4], [303.0])
    assert got[2] == ([("P1", "C1")], [0, 0], [T, T + 2], [4.1, 4.3], [300.0, 302.0])
    assert got[3][1:] == ([], [], [], [])


def test_a_batch_carries_its_samples_sorted_by_cell_as_the_database_sent_them(
    tmp_path: Path, influx_v1: InfluxV1, influx_db: str
) -> None:
    """The database answers a series at a time, C1's before C2's, each in time order."""
    write(
        influx_v1,
        influx_db,
        [
            f"cell,potline=P1,cell=C2 voltage_v=4.2,current_ka=301 {T}",
            f"cell,potline=P1,cell=C1 voltage_v=4.1,current_ka=300 {T + 1}",
            f"cell,potline=P1,cell=C2 voltage_v=4.3,current_ka=302 {T + 2}",
            f"cell,potline=P1,cell=C1 voltage_v=4.4,current_ka=303 {T + 3}",
        ],
    )
    batch = History(query(tmp_path, influx_v1, influx_db)).samples("P1", T, T + 10)
    assert batch.by_cell is not None
    code, ts, v, i = (column.tolist() for column in batch.by_cell)
    names = [batch.cells[c][1] for c in code]
    assert names == ["C1", "C1", "C2", "C2"]
    assert ts == [T + 1, T + 3, T, T + 2]
    assert v == [4.1, 4.4, 4.2, 4.3]
    assert i == [300.0, 303.0, 301.0, 302.0]
