"""``cellmon replay FILE``: history from a file, and the KPI periods it touches rewritten.

A backfill (contract 5.2). Each row of a CSV or Parquet file becomes the object a
controller would have sent and is validated by the same decoder as live, with the input
mapping of ``--input`` if the historian names things its own way; bad rows go to the
dead-letter file like bad messages. The good ones are written to the database as raw
points by the replay's own journal and drain, and then every KPI period the file touches
is rewritten from all of that period's data, live and replayed, by the owner of the live
state directory (``collector.commands.recalc``). A sample the database already holds
counts once, so replaying a file twice changes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from collector import build
from collector.commands.cli import load_or_exit
from collector.commands.recalc import add_common, deployment, rewrite
from collector.config.inputs import InputRule
from collector.config.models import Config
from collector.engine.targets import touched
from collector.journal import locks
from collector.journal import store as journal
from collector.runtime.service import SERVICE_LOCK
from collector.source.decode import Decoded, Rejection
from collector.source.ids import valid_level
from collector.source.mapping import ID_FIELDS
from collector.source.payload import dump
from collector.source.topics import Route
from processors.kpi.periods import KINDS

NS = 1_000_000_000
INT_FIELDS = ("anode",)
TEXT_FIELDS = ("potline", "cell", "type", "block", "crew")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellmon replay``."""
    parser.add_argument("file", type=Path, help="CSV or Parquet file (see docs/replay.md)")
    parser.add_argument("--config", default="config/cellmon.yaml", help="the deployment's config")
    parser.add_argument(
        "--input",
        metavar="NAME",
        help="read each row as this input of the rules reads a payload (its fields and units)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="the replay's own journal (default: the config's state_dir + '-replay')",
    )
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows read at a time")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    """Write the file's raw data, then have the periods it touches rewritten."""
    cfg = load_or_exit(args.config)
    state = args.state_dir or Path(f"{cfg.state_dir}-replay")
    if state.resolve() == cfg.state_path.resolve():
        print("cellmon replay: --state-dir is the deployment's own; give another", file=sys.stderr)
        return 2
    rule = next((r for r in cfg.rules.inputs if r.name == args.input), None)
    if args.input is not None and rule is None:
        names = ", ".join(r.name for r in cfg.rules.inputs)
        print(f"cellmon replay: no input {args.input!r} in the rules ({names})", file=sys.stderr)
        return 2
    own = journal_config(cfg, state)
    try:
        lock = locks.hold(own.state_path / SERVICE_LOCK)
    except locks.Busy as err:
        print(f"cellmon replay: another replay runs on {state} ({err})", file=sys.stderr)
        return 2
    try:
        replay = Replay(own, args.file, rule, quiet=args.quiet)
        if replay.run(args.chunk_rows) != 0:
            return 1
    finally:
        lock.close()
    targets = touched(build.calendar(cfg), KINDS, replay.rows(), int(cfg.plant.max_gap_s * NS))
    return rewrite(deployment(cfg, args.shards), targets, quiet=args.quiet)


def journal_config(cfg: Config, state: Path) -> Config:
    """The config of a replay's own journal: its raw points go where the live ones go."""
    return cfg.model_copy(
        update={"state_dir": str(state), "shards": [], "instance": f"{cfg.instance_name}-replay"}
    )


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
    """The raw stage: decoder and dead letters here, then the replay's own journal and drain."""

    def __init__(self, cfg: Config, path: Path, rule: InputRule | None, *, quiet: bool) -> None:
        state = cfg.state_path
        self.cfg = cfg
        self.path = path
        self.rule = rule
        self.mapping = rule.mapping() if rule is not None else None
        self.quiet = quiet or not sys.stderr.isatty()
        self.decoder = build.decoder(cfg)
        self.inbox = journal.Inbox(journal.connect_inbox(state))
        self.dead_letters = build.dead_letters(cfg)
        self.engine = build.engine(cfg, replay=True)
        self.drain = build.drain(cfg)
        self.foreign = 0
        self._times: dict[str, list[np.ndarray]] = {}
        self._cells: dict[str, set[str]] = {}

    def run(self, chunk_rows: int) -> int:
        """Read, validate, journal and write every chunk; 0 once the database has it all."""
        return self.write(self._decoded(chunk_rows))

    def write(self, batches: Iterable[tuple[int, Decoded]]) -> int:
        """Journal and write batches of (rows read, what they gave); 0 once the database has all.

        Their rejections were dealt with by whoever decoded them.
        """
        started = time.perf_counter()
        before = self.engine.store.counters()
        finishing = threading.Event()
        writer = threading.Thread(target=self.drain.run, args=(finishing,), name="drain")
        writer.start()
        rows = 0
        with tqdm(unit=" rows", disable=self.quiet, file=sys.stderr) as progress:
            for read, out in batches:
                self._journal(out)
                while self.engine.step():
                    pass
                rows += read
                progress.update(read)
        finishing.set()
        writer.join()
        self.engine.finish()
        self.drain.run(finishing)
        self.drain.sink.close()
        self.dead_letters.close()
        self._summary(rows, before, time.perf_counter() - started)
        buffered = self.drain.outbox.size()[1]
        if buffered:
            print(
                f"cellmon replay: the database did not take {buffered} points (kept in "
                f"{self.cfg.state_path}); no period was rewritten: run the replay again",
                file=sys.stderr,
            )
        return 0 if buffered == 0 else 1

    def rows(self) -> dict[str, tuple[set[str], np.ndarray]]:
        """Per potline, the cells and the times of every row accepted (duplicates too)."""
        return {p: (self._cells[p], np.concatenate(times)) for p, times in self._times.items()}

    def _decoded(self, chunk_rows: int) -> Iterator[tuple[int, Decoded]]:
        first_row = 0
        for chunk in read_rows(self.path, chunk_rows):
            yield len(chunk), self._decode(chunk, first_row)
            first_row += len(chunk)

    def _decode(self, chunk: list[dict[str, Any]], first_row: int) -> Decoded:
        """The chunk's rows through the live decoder; bad rows to this journal's dead letters."""
        out = Decoded()
        now = time.time_ns()
        for k, obj in enumerate(chunk, start=first_row + 1):
            source = f"replay:{self.path.name}:{k}"
            route = self._route(obj)
            if isinstance(route, Rejection):
                out.rejections.append(replace(route, topic=source, payload=dump(obj)))
                continue
            self.decoder.decode_object(route, source, obj, now, out)
        if out.rejections:
            self.dead_letters.append(out.rejections, now)
        return out

    def _journal(self, out: Decoded) -> None:
        self.foreign += out.foreign
        counts = {"rejected": len(out.rejections)}
        counts.update(Counter(f"rejected_{r.reason}" for r in out.rejections))
        self.inbox.append(out.samples, out.events, counts)
        self._touch([(p, c, t) for p, c, t, *_ in out.samples])
        self._touch([(p, c, t) for p, c, t, *_ in out.events])

    def _route(self, obj: dict[str, Any]) -> Route | Rejection:
        """Where a row leads: its ids as topic levels would give them, checked as ids are."""
        from_payload = self.mapping.ids if self.mapping is not None else ()
        ids = {name: str(obj.pop(name, "")) for name in ID_FIELDS if name not in from_payload}
        for name, value in ids.items():
            if not valid_level(value):
                detail = f"{name}: {value!r} is not an id (1 to 32 of A-Z a-z 0-9 _ -)"
                return Rejection("", "bad_id", detail, b"")
        potline, cell = ids.get("potline", ""), ids.get("cell", "")
        if self.rule is not None:
            return Route(self.rule.kind, potline, cell, self.mapping, self.rule.name)
        kind = "event" if obj.get("type") else "telemetry"
        if kind == "telemetry":
            obj.pop("type", None)
        elif "block" in obj:
            obj["block"] = str(obj["block"])
        return Route(kind, potline, cell)

    def _touch(self, rows: list[tuple[str, str, int]]) -> None:
        by_potline: dict[str, list[int]] = {}
        for potline, cell, ts in rows:
            by_potline.setdefault(potline, []).append(ts)
            self._cells.setdefault(potline, set()).add(cell)
        for potline, times in by_potline.items():
            self._times.setdefault(potline, []).append(np.array(times, dtype=np.int64))

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
            f"of potlines not in the config {self.foreign}, "
            f"raw points written {delta.get('written', 0)}; journal in {self.cfg.state_path}"
        )
