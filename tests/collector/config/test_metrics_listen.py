"""Mutations of ``metrics.listen``: each refused with its line, or at startup with a reason."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from collector.config.loader import load_config
from collector.config.yamlsource import ConfigError
from tests.collector.config.config_files import write
from tests.harness import ROOT

PLANT = """\
plant:
  potlines:
    - {id: P1, baseline_sec_kwh_per_t: 13450}
    - {id: P2, baseline_sec_kwh_per_t: 13450}
"""
RANGE = "expected HOST:PORT with a port from 1 to 65535"

MUTATIONS = [
    ("port-zero", "127.0.0.1:0", f"{RANGE}, got '127.0.0.1:0'"),
    ("port-too-high", "127.0.0.1:65536", f"{RANGE}, got '127.0.0.1:65536'"),
    ("port-not-a-number", "127.0.0.1:http", f"{RANGE}, got '127.0.0.1:http'"),
    ("port-negative", "127.0.0.1:-1", f"{RANGE}, got '127.0.0.1:-1'"),
    ("port-only", "'9100'", f"{RANGE}, got '9100'"),
    ("no-host", "':9100'", f"{RANGE}, got ':9100'"),
    ("host-only", "localhost", f"{RANGE}, got 'localhost'"),
    ("url", "http://127.0.0.1:9100/metrics", f"{RANGE}, got 'http://127.0.0.1:9100/metrics'"),
    ("empty-brackets", "'[]:9100'", f"{RANGE}, got '[]:9100'"),
    ("a-number", "9100", 'expected a string, got 9100 (write it in quotes: "9100")'),
]


@pytest.mark.parametrize(
    ("value", "message"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_a_bad_listen_is_refused_with_its_line(workdir: Path, value: str, message: str) -> None:
    path = write(workdir, f"state_dir: state\nmetrics:\n  listen: {value}\n{PLANT}")
    expected = f"cellmon.yaml:3: metrics.listen: {message}"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config(path)


def test_an_unknown_key_of_metrics_is_refused(workdir: Path) -> None:
    path = write(workdir, f"metrics:\n  port: 9100\n{PLANT}")
    with pytest.raises(ConfigError, match=r"^cellmon\.yaml:2: metrics\.port: "):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "address"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("'[::1]:9100'", ("::1", 9100))],
)
def test_a_good_listen_is_taken(workdir: Path, value: str, address: tuple[str, int]) -> None:
    cfg = load_config(write(workdir, f"metrics:\n  listen: {value}\n{PLANT}"))
    assert cfg.metrics.address == address


def test_no_endpoint_by_default(workdir: Path) -> None:
    assert load_config(write(workdir, PLANT)).metrics.address is None


def test_each_shard_listens_on_the_next_port(workdir: Path) -> None:
    cfg = load_config(write(workdir, f"metrics:\n  listen: 127.0.0.1:9100\n{PLANT}")).split(2)
    assert [cfg.shard(s).metrics.address for s in cfg.shards] == [
        ("127.0.0.1", 9100),
        ("127.0.0.1", 9101),
    ]


# A port in use is found when `cellmon run` starts: a clear error and exit status 2, before
# anything connects (no broker or database is needed to see it).


def run(workdir: Path, listen: str, *shards: str) -> subprocess.CompletedProcess[str]:
    text = f"state_dir: state\nsink: {{type: file}}\nmetrics:\n  listen: {listen}\n{PLANT}"
    path = write(workdir, text)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.commands.cli",
            "run",
            "--config",
            str(workdir / path),
            *shards,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def taken() -> socket.socket:
    """A port another program listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_port_in_use_refuses_the_start(workdir: Path, taken: socket.socket) -> None:
    port = taken.getsockname()[1]
    with taken:
        done = run(workdir, f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"metrics.listen 127.0.0.1:{port}: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr


def test_a_shards_port_in_use_refuses_the_start(workdir: Path, taken: socket.socket) -> None:
    port = taken.getsockname()[1]  # the second shard's: the first listens on the one before
    with taken:
        done = run(workdir, f"127.0.0.1:{port - 1}", "--shards", "2")
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in done.stderr
