import argparse

import pytest

from simulator import cli
from tests.servers import free_port


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        # 2009-01-01T00:00:00Z is 1230768000 s after the epoch
        ("2009-01-01T00:00:00Z", 1_230_768_000_000_000_000),
        ("2009-01-01T08:00:00+08:00", 1_230_768_000_000_000_000),
        ("2009-01-01T00:00:00.250+00:00", 1_230_768_000_250_000_000),
        ("1969-12-31T23:59:59.5Z", -500_000_000),
    ],
)
def test_start_is_rfc3339_with_an_offset(text, ns) -> None:
    assert parse("--start", text).start == ns


@pytest.mark.parametrize("text", ["2009-01-01T00:00:00", "yesterday"])
def test_start_without_an_offset_is_refused(text) -> None:
    with pytest.raises(SystemExit):
        parse("--start", text)


def test_duration_and_steps_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse("--duration-s", "10", "--steps", "10")


def test_unreachable_broker_exits_1(capsys) -> None:
    assert cli.run(parse("--port", str(free_port()), "--steps", "1", "--speed", "0")) == 1
    assert "cellmon simulate:" in capsys.readouterr().err


def test_impossible_options_exit_2(capsys) -> None:
    assert cli.run(parse("--array-size", "0", "--steps", "1")) == 2
    assert "array_size" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--array-size", "2"), "--format json only"),
        (("--dup-fraction", "0.1"), "--format json only"),
        (("--section-cells", "0"), "section_cells"),
        (("--drop-every", "-1"), "drop_every"),
        (("--death-every-s", "-1"), "death_every_s"),
    ],
)
def test_impossible_sparkplug_options_exit_2_before_connecting(extra, says, capsys) -> None:
    argv = ("--format", "sparkplug", "--port", str(free_port()), "--steps", "1", *extra)
    assert cli.run(parse(*argv)) == 2
    assert says in capsys.readouterr().err
