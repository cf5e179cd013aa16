"""The worker as a child interpreter of its own, told what to do over a pipe.

Not ``multiprocessing``: its spawn start method launches a resource tracker process beside
every child (12 MiB resident for a process cellmon never needs: the two processes share no
semaphore or memory, only the journal files), and its events are semaphores. A pipe is all
the worker needs: the config goes down it once, then one byte per command; its end of file
says the MQTT process is gone, even one killed before the worker finished starting.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
from typing import IO

from collector.config.models import Config

RELOAD = b"r"
RELOAD_CONFIG = b"c"
FINISH = b"f"
_LENGTH = struct.Struct("<Q")
MALLOC_ENV = {"MALLOC_ARENA_MAX": "1"}
"""glibc's malloc gives each thread that contends an arena of its own (the engine, drain and
alerts threads), each grown to that thread's peak and kept; with the interpreter lock they
seldom allocate at once. Draining 200,000 messages of 400 cells: the worker's peak RSS
100 → 96 MiB (2 arenas: 98), 46,000 samples/s in 5 runs of 7 as with 16 arenas (two ran
at 28,000: see docs/benchmarks.md). A value in the environment wins."""


class WorkerProcess:
    """The parent's handle: start, send commands, see it alive, wait for its exit code."""

    def __init__(self, module: str, cfg: Config, log_level: str):
        self._argv = [sys.executable, "-m", module]
        self._body = pickle.dumps((cfg, log_level), protocol=pickle.HIGHEST_PROTOCOL)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it in this process group (a signal to the group reaches it) and send the config."""
        env = {**MALLOC_ENV, **os.environ}
        self._proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, env=env)
        self._send(_LENGTH.pack(len(self._body)) + self._body)

    def reload(self) -> None:
        """Have it load the rules files again (the MQTT process found them valid)."""
        self._send(RELOAD)

    def reload_config(self) -> None:
        """Have it load the config file and the rules again (the MQTT process took them)."""
        self._send(RELOAD_CONFIG)

    def finish(self) -> None:
        """Tell it the MQTT process committed its last message: process and write the rest."""
        self._send(FINISH)

    def _send(self, data: bytes) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except BrokenPipeError:  # it died: worker_alive says so, stop reports its exit code
            pass

    def is_alive(self) -> bool:
        """False once it exited, whatever the reason."""
        return self._proc is not None and self._proc.poll() is None

    def join(self) -> int:
        """Wait for it; its exit code (a signal that killed it: 1, as a failure)."""
        assert self._proc is not None
        code = self._proc.wait()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        return code if code >= 0 else 1


def read_start(stream: IO[bytes]) -> tuple[Config, str] | None:
    """The config and log level the parent sent; None when it was gone before sending them."""
    fd = stream.fileno()
    head = _read_exactly(fd, _LENGTH.size)
    body = _read_exactly(fd, _LENGTH.unpack(head)[0]) if head else b""
    if not body:
        return None
    cfg, log_level = pickle.loads(body)  # from the parent process, which we trust as ourselves
    return cfg, log_level


def _read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = os.read(fd, n - len(data))
        if not more:
            return b""
        data += more
    return data


def commands(stream: IO[bytes], timeout_s: float) -> bytes | None:
    """The commands that came within ``timeout_s`` (b"" on none); None: the parent is gone."""
    fd = stream.fileno()
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        return b""
    data = os.read(fd, 4096)
    return data or None
