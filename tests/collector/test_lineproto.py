import pytest

from collector.lineproto import encode_point, encode_points, encode_samples, series_prefix
from processors.model import Point


@pytest.mark.parametrize(
    ("point", "line"),
    [
        (
            Point(
                "sec_cell",
                (("potline", "P1"), ("cell", "C 1"), ("period", "day")),
                {"energy_kwh": 1.5, "complete": True, "n": 3, "note": 'a "b"'},
                10,
            ),
            "sec_cell,cell=C\\ 1,period=day,potline=P1 energy_kwh=1.5,complete=true,n=3i,"
            'note="a \\"b\\"" 10',
        ),
        (
            Point("m,x", (("t", "a=b,c"),), {"f k": 2.0, "bad": float("nan")}, 5),
            "m\\,x,t=a\\=b\\,c f\\ k=2.0 5",
        ),
    ],
    ids=["types-and-escapes", "escaped-names-nan-dropped"],
)
def test_encode_point(point: Point, line: str) -> None:
    assert encode_point(point) == line


def test_point_without_fields_is_skipped() -> None:
    assert encode_points([Point("m", (), {"x": float("inf")}, 1)]) == (0, b"")


def test_encode_samples() -> None:
    prefixes = {7: series_prefix("cell", (("potline", "P1"), ("cell", "C001")))}
    body = encode_samples(
        prefixes, [7, 7], [1, 2], [4.2, 4.25], [300.0, 300.5], [None, {"bath_temp_c": 955.0}]
    )
    assert body == (
        b"cell,cell=C001,potline=P1 voltage_v=4.2,current_ka=300.0 1\n"
        b"cell,cell=C001,potline=P1 voltage_v=4.25,current_ka=300.5,bath_temp_c=955.0 2\n"
    )
