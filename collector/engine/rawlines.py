"""The raw ``cell`` lines of a batch, and what line protocol cannot carry.

A point or sample that line protocol cannot carry (``collector.sinks.escape.Unencodable``)
is counted as ``unencodable`` and kept in the rejected file with the reason, like the lines
the database refuses: retrying cannot make it encodable, and it must not hold up the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collector.sinks.escape import Unencodable
from collector.sinks.lineproto import Rejected, encode_samples, series_prefix

log = logging.getLogger(__name__)

Encoded = tuple[int, bytes, list[Rejected]]
"""(line count, body, what could not be encoded) of a chunk of output."""


class RawLines:
    """Encodes samples as ``cell`` lines, each cell's series prefix formatted once."""

    def __init__(self, names: Callable[[int], tuple[str, str]], rejected: Path | None) -> None:
        """``names`` gives a cell id's (potline, cell); ``rejected``: None, the log keeps them."""
        self._names = names
        self._rejected_path = rejected
        self._prefixes: dict[int, str] = {}
        self._bad_cells: dict[int, str] = {}  # cell id -> why its series cannot be encoded

    def encode(
        self,
        cid: Sequence[int],
        ts: Sequence[int],
        v: Sequence[float],
        i: Sequence[float],
        extra: Sequence[Any],
    ) -> Encoded:
        """The raw ``cell`` lines.

        The samples of a cell whose series cannot be encoded are rejected, with the reason.
        """
        ids = set(cid)
        bad = (
            set() if ids <= self._prefixes.keys() else {c for c in ids if not self._known_prefix(c)}
        )
        if not bad:
            return encode_samples(self._prefixes, cid, ts, v, i, extra)
        samples = list(zip(cid, ts, v, i, extra, strict=True))
        rejected = [self._bad_sample(*s) for s in samples if s[0] in bad]
        good = [s for s in samples if s[0] not in bad]
        if not good:
            return 0, b"", rejected
        n, body, more = encode_samples(self._prefixes, *zip(*good, strict=True))
        return n, body, [*rejected, *more]

    def keep(self, rejected: list[Rejected]) -> int:
        """Keep what could not be encoded, before the commit: at least once, never lost."""
        if not rejected:
            return 0
        if self._rejected_path is None:
            for r in rejected:
                log.error("cannot encode: %s: %s", r.reason, r.what)
            return len(rejected)
        log.error(
            "%d cannot be encoded, kept in %s; the first: %s",
            len(rejected),
            self._rejected_path,
            rejected[0].reason,
        )
        with open(self._rejected_path, "a", encoding="utf-8") as f:
            f.writelines(f"# unencodable: {r.reason}\n# {r.what}\n" for r in rejected)
        return len(rejected)

    def _known_prefix(self, cid: int) -> bool:
        """Whether the series prefix of a cell can be encoded, formatted and cached once."""
        if cid in self._prefixes:
            return True
        if cid in self._bad_cells:
            return False
        potline, cell = self._names(cid)
        try:
            self._prefixes[cid] = series_prefix("cell", (("potline", potline), ("cell", cell)))
        except Unencodable as err:
            self._bad_cells[cid] = str(err)
            return False
        return True

    def _bad_sample(self, cid: int, ts: int, v: float, i: float, extra: Any) -> Rejected:
        potline, cell = self._names(cid)
        return Rejected(self._bad_cells[cid], repr(("cell", potline, cell, ts, v, i, extra)))
