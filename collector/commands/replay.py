"""``cellmon replay FILE``: historical samples and events through the live path.

Each row of a CSV or Parquet file becomes the object a controller would have sent, is
validated by the same decoder, de-duplicated by the same journal, processed by the same
engine and written by the same drain as live: a replay of last month gives the numbers the
live run gave. Bad rows go to the dead-letter file like bad messages.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from collector import build
from collector.commands.cli import load_or_exit
from collector.config.models import Config
from collector.journal import locks
from collector.journal import store as journal
from collector.runtime.service import SERVICE_LOCK
from collector.source.decode import Decoded
from collector.source.topics import Route

INT_FIELDS = ("anode",)
TEXT_FIELDS = ("potline", "cell", "type", "block")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellmon replay``."""
    parser.add_argument("file", type=Path, help="CSV or Parquet file (see docs/replay.md)")
    parser.add_argument("--config", default="config/cellmon.yaml", help="config file")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="journal and processor state (default: the config's state_dir + '-replay'; "
        "the live state_dir, with the service stopped, continues its state)",
    )
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows read at a time")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Replay the file; exit 0 when everything read was processed and written."""
    cfg = load_or_exit(args.config)
    state = args.state_dir or Path(f"{cfg.state_dir}-replay")
    cfg = cfg.model_copy(update={"state_dir": str(state)})
    try:
        lock = locks.hold(cfg.state_path / SERVICE_LOCK)
    except locks.Busy as err:
        print(f"cellmon replay: a cellmon runs on {state} ({err})", file=sys.stderr)
        return 2
    try:
        return Replay(cfg, args.file, quiet=args.quiet).run(args.chunk_rows)
    finally:
        lock.close()


def read_rows(path: Path, chunk_rows: int) -> Iterator[list[dict[str, Any]]]:
    """The file's rows as dicts, a chunk at a time, empty cells left out."""
    if path.suffix.lower() in (".parquet", ".pq"):
        frames: Iterator[pd.DataFrame] = (
            b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
        )
    else:
        frames = pd.read_csv(path, chunksize=chunk_rows, dtype={k: str for k in TEXT_FIELDS})
    for frame in frames:
        yield [_clean(row) for row in frame.to_dict("records")]


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Drop empty cells; a column that had gaps reads integers back as floats."""
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if key in INT_FIELDS and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[str(key)] = value
    return out


class Replay:
    """One replay: decoder, inbox and dead letters here; engine and drain as in the worker."""

    def __init__(self, cfg: Config, path: Path, *, quiet: bool) -> None:
        state = cfg.state_path
        self.cfg = cfg
        self.path = path
        self.quiet = quiet or not sys.stderr.isatty()
        self.decoder = build.decoder(cfg)
        self.inbox = journal.Inbox(journal.connect_inbox(state))
        self.dead_letters = build.dead_letters(cfg)
        self.engine = build.engine(cfg, alerts=False)  # history pages nobody
        self.drain = build.drain(cfg)

    def run(self, chunk_rows: int) -> int:
        """Read, validate, journal and process every chunk; then write everything."""
        started = time.perf_counter()
        before = self.engine.store.counters()
        finishing = threading.Event()
        writer = threading.Thread(target=self.drain.run, args=(finishing,), name="drain")
        writer.start()
        rows = 0
        with tqdm(unit=" rows", disable=self.quiet, file=sys.stderr) as progress:
            for chunk in read_rows(self.path, chunk_rows):
                self._append(chunk, rows)
                while self.engine.step():
                    pass
                rows += len(chunk)
                progress.update(len(chunk))
        finishing.set()
        writer.join()
        self.engine.finish()
        self.drain.run(finishing)
        self.drain.sink.close()
        self.dead_letters.close()
        self._summary(rows, before, time.perf_counter() - started)
        return 0 if self.drain.outbox.size()[1] == 0 else 1

    def _append(self, chunk: list[dict[str, Any]], first_row: int) -> None:
        out = Decoded()
        now = time.time_ns()
        for k, obj in enumerate(chunk, start=first_row + 1):
            potline, cell = str(obj.pop("potline", "")), str(obj.pop("cell", ""))
            kind = "event" if obj.get("type") else "telemetry"
            if kind == "telemetry":
                obj.pop("type", None)
            elif "block" in obj:
                obj["block"] = str(obj["block"])
            source = f"replay:{self.path.name}:{k}"
            self.decoder.decode_object(Route(kind, potline, cell), source, obj, now, out)
        if out.rejections:
            self.dead_letters.append(out.rejections, now)
        counts = {"rejected": len(out.rejections)}
        counts.update(Counter(f"rejected_{r.reason}" for r in out.rejections))
        self.inbox.append(out.samples, out.events, counts)

    def _summary(self, rows: int, before: dict[str, int], seconds: float) -> None:
        after = self.engine.store.counters()
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        reasons = ", ".join(
            f"{k.removeprefix('rejected_')} {v}"
            for k, v in sorted(delta.items())
            if k.startswith("rejected_") and v
        )
        rate = rows / max(seconds, 1e-9)
        print(
            f"replayed {rows} rows of {self.path} in {seconds:.1f} s ({rate:,.0f} rows/s): "
            f"accepted {delta.get('accepted', 0)}, rejected {delta.get('rejected', 0)}"
            f"{f' ({reasons})' if reasons else ''}, duplicates {delta.get('duplicates', 0)}, "
            f"late {delta.get('late', 0)}, points written {delta.get('written', 0)}; "
            f"state in {self.cfg.state_path}"
        )
