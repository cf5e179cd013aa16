from contextlib import closing
from pathlib import Path

import pytest

from collector.sinks.base import SinkError
from collector.sinks.file import FileSink

BATCH_1 = (
    b'cell,potline=P1,cell=C01 voltage_v=4.213,anode=7i,complete=true,note="tap" '
    b"1700000000123456789\n"
    b"cell,potline=P1,cell=C02 voltage_v=4.187 1700000060123456790\n"
)
BATCH_2 = b"sec_cell,potline=P1,cell=C01,period=day energy_kwh=12.25 1699977600000000000\n"


def test_batches_are_appended_exactly_creating_the_directories(tmp_path: Path) -> None:
    path = tmp_path / "var" / "cellmon" / "points.lp"
    with closing(FileSink(path)) as sink:
        sink.write(BATCH_1)
        sink.write(BATCH_2)

    assert path.read_bytes() == BATCH_1 + BATCH_2


def test_existing_content_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "points.lp"
    path.write_bytes(BATCH_1)
    with closing(FileSink(path)) as sink:
        sink.write(BATCH_2)

    assert path.read_bytes() == BATCH_1 + BATCH_2


@pytest.mark.parametrize(
    ("batches", "content"),
    [
        ([b"m v=1 1", b"m v=2 2"], b"m v=1 1\nm v=2 2\n"),
        ([b"m v=1 1\n", b"", b"m v=2 2"], b"m v=1 1\nm v=2 2\n"),
    ],
    ids=["no-final-newline", "empty-batch"],
)
def test_file_stays_one_line_per_point(
    tmp_path: Path, batches: list[bytes], content: bytes
) -> None:
    path = tmp_path / "points.lp"
    with closing(FileSink(path)) as sink:
        for batch in batches:
            sink.write(batch)

    assert path.read_bytes() == content


def test_full_disk_is_retryable() -> None:
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    with closing(FileSink("/dev/full")) as sink, pytest.raises(SinkError) as err:
        sink.write(BATCH_1)

    assert err.value.retryable is True
    assert "No space left on device" in str(err.value)
