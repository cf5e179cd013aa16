"""One owner per state directory and stage: an advisory lock file each.

Two MQTT processes on one state directory would interleave their journals, and a worker
left running by a killed MQTT process must finish before a new one reads the same position.
The kernel releases the lock when its process dies, however it dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


class Busy(RuntimeError):
    """Another process holds the lock."""


def hold(path: Path, *, wait_s: float = 0.0) -> IO[bytes]:
    """Take the lock at ``path``, waiting up to ``wait_s``; keep the returned file open.

    Raises ``Busy`` when another process still holds it after the wait.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "ab")  # noqa: SIM115 - the open file is the lock
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                msg = f"{path} is held by another process"
                raise Busy(msg) from None
            time.sleep(0.1)
            continue
        f.truncate(0)
        f.write(str(os.getpid()).encode())
        f.flush()
        return f
