"""Sink that appends line protocol to a local file, for the demo and for sites with no database."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from collector.sinks.base import SinkError
from collector.sinks.options import FileOptions

if TYPE_CHECKING:
    from collector.config.models import Config as CellmonConfig


def build(cfg: CellmonConfig) -> FileSink:
    """The file sink of a config whose ``sink.type`` is ``file``."""
    options = cfg.sink
    assert isinstance(options, FileOptions)
    return FileSink(cfg.state_path / options.path)


class FileSink:
    """Appends each batch to `path`, on disk before `write()` returns.

    The drain loop deletes a batch once `write()` returned, so the batch is fsynced first,
    and the directory too when the file is new. A batch that fails half-way is cut off
    again, so the file never holds half a line. Each batch ends with a newline in the file,
    so the file stays valid line protocol whatever the batches look like.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        created = not self._path.exists()
        self._file = self._path.open("ab", buffering=0)
        if created:
            _fsync_directory(self._path.parent)

    def write(self, lines: bytes) -> None:
        """Append one batch and fsync it."""
        data = lines if lines.endswith(b"\n") or not lines else lines + b"\n"
        end = self._file.tell()
        try:
            _write_all(self._file.fileno(), data)
            os.fsync(self._file.fileno())
        except OSError as exc:
            with suppress(OSError):
                self._file.truncate(end)
            msg = f"cannot append to {self._path}: {exc}"
            raise SinkError(msg, retryable=True) from exc

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _write_all(fd: int, data: bytes) -> None:
    """Write all of data: os.write may take only part of it (full disk, signal)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    """Make a new file's name durable, not only its content."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
