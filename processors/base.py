"""The processor seam.

Call order: the engine calls ``apply`` once per batch, in inbox order, with the state the
previous call returned (``None`` the first time, a checkpoint after a start). State lives
in memory between batches; every few seconds the engine checkpoints it, as plain JSON data
(dicts, lists, numbers, strings), with the journal position it stands at, in one
transaction. After a crash the journal since that checkpoint is processed again: safe,
because every point is an overwrite of the same measurement, tags and time.

A processor whose state is JSON data already returns a new one from ``apply`` and never
changes the one it was given. An ``InMemory`` processor keeps objects instead and updates
them in place (no copy of every cell per batch: that was most of the worker's time), and
turns them into JSON only when asked to ``checkpoint``; a JSON state it is given, it reads
into new objects and leaves unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol, runtime_checkable

from processors.model import Batch, Event, Point, SampleBatch


class Processor(Protocol):
    """A pure step from (batch, state) to (new state, points)."""

    name: str

    def apply(self, batch: Batch, state: Any) -> tuple[Any, list[Point]]:
        """Return the new state and the points this batch produced (see the module)."""
        ...


@runtime_checkable
class InMemory(Processor, Protocol):
    """A processor whose state between batches is objects, updated in place by ``apply``.

    ``apply``, ``flush`` and ``rebase`` take either what ``apply`` returned or a checkpoint.
    """

    def checkpoint(self, state: Any) -> Any:
        """The state as JSON data, without copying it twice (no ``asdict``/``deepcopy``)."""
        ...


@runtime_checkable
class Chunked(InMemory, Protocol):
    """An ``InMemory`` processor whose state is mostly history that changes at its end.

    A checkpoint of it is a JSON object whose ``"parts"`` key maps part names to JSON
    values: a charge history of every cell, say, a chunk per cell and ten minutes. The
    journal keeps each part in a row of its own, and a checkpoint writes only the parts
    that changed, so its cost is the newest chunks, not the whole history.
    """

    def changes(self, state: Any) -> tuple[Any, dict[str, Any], bool]:
        """(the checkpoint without ``"parts"``, the parts changed since the last call, all).

        A changed part maps to its JSON value, a forgotten one to None. With ``all`` true
        (a state read from a checkpoint, whose marks are gone) the parts given are every
        part there is, and replace those stored.
        """
        ...


def checkpoint(processor: Processor, state: Any) -> Any:
    """Any processor's state as JSON data."""
    return processor.checkpoint(state) if isinstance(processor, InMemory) else state


@runtime_checkable
class Flushing(Processor, Protocol):
    """A processor that holds running values back between writes (open KPI periods).

    ``flush`` is called at shutdown and at the end of a replay, after the last ``apply``.
    """

    def flush(self, state: Any) -> tuple[Any, list[Point]]:
        """Return the state and the points of every value not yet written."""
        ...


@runtime_checkable
class Deriving(Processor, Protocol):
    """A processor whose values are also fields of the raw ``cell`` points (derived fields).

    The engine asks the first such processor for every sample of a batch, late ones too,
    before the batch is encoded.
    """

    def derive(self, samples: SampleBatch) -> list[dict[str, float] | None]:
        """Each sample's ``extra`` with the derived values added (new dicts; None: none)."""
        ...


@runtime_checkable
class Alerting(Processor, Protocol):
    """A processor some of whose points page somebody (alarm transitions)."""

    def alerts(self, points: list[Point]) -> list[Point]:
        """The points among those it produced that are to be sent as alerts."""
        ...


PeriodId = tuple[str, str, int]
"""A KPI period: potline, kind (shift, day, month) and UTC start in ns."""


@runtime_checkable
class Recomputable(Processor, Protocol):
    """A KPI processor whose periods are a function of their data, so history can redo them.

    For a backfill or a recalculation a new instance runs over the periods' whole raw
    history from an empty state; its points replace those of the periods, and ``rebase``
    lets the live instance continue the periods it still has open from the same values.
    """

    instants: frozenset[str]
    """Measurements stamped at an instant the data decides (an effect's start), not a
    period's start: a recalculation that moves or merges one removes the point it no longer
    makes."""

    def rebase(self, state: Any, fresh: Any, periods: Collection[PeriodId]) -> Any:
        """The live ``state`` with these periods taken from ``fresh`` (the rebuilt state)."""
        ...


@runtime_checkable
class Preceded(Recomputable, Protocol):
    """A KPI processor whose points in the periods may need samples from before them.

    A tap cycle that ends in a period began at the previous tap, up to days earlier. A
    recalculation reads those cells' samples further back, and only theirs: reading the
    whole potline back that far would cost more than the periods themselves.
    """

    def lookback(self, events: Sequence[Event], start_ns: int) -> dict[tuple[str, str], int]:
        """The (potline, cell)s whose samples before ``start_ns`` are needed, and from when.

        ``events`` are those before ``start_ns`` the recalculation reads, and those in its
        periods. The recalculation feeds the samples, in time order, before its periods'.
        """
        ...


@runtime_checkable
class Followed(Recomputable, Protocol):
    """A KPI processor whose points in the periods may need samples from after them.

    The settling of an anode change late in a period is judged on up to hours of its cell's
    minutes after the period's end. A recalculation reads those cells' samples further on,
    and only theirs: reading the whole potline that far would add a third to a day's read.
    """

    def lookahead(self, events: Sequence[Event], end_ns: int) -> dict[tuple[str, str], int]:
        """The (potline, cell)s whose samples from ``end_ns`` on are needed, and until when.

        ``events`` are those of the recalculation's window, which ends at ``end_ns``. The
        recalculation feeds the samples, in time order, after the window's and before it
        flushes; what the processor then writes is kept like its other points.
        """
        ...


@runtime_checkable
class Summing(Recomputable, Protocol):
    """A KPI processor whose month is the sum of its days.

    Reading a month's raw samples back is what made a recalculation slow (a 400-cell
    potline at 1 Hz holds a billion a month); its days' points are a few thousand. So a
    recalculation redoes only the days it touches from raw samples and builds the month
    from the sums its days' points carry.
    """

    day_measurements: frozenset[str]
    """The measurements whose ``period=day`` points carry what the month adds up."""

    def summed(
        self,
        fresh: Any,
        month: PeriodId,
        end_ns: int,
        days: Sequence[Point],
        events: Sequence[Event],
        now_ns: int,
    ) -> tuple[Any, list[Point]]:
        """``fresh`` with the month's totals the sums of its ``days``, and the month's points.

        ``days`` are the month's day points of ``day_measurements``, ``events`` its
        ``metal_tap`` events (a tap counts into the month, not into a day). The month is
        complete, and closed in the state, once ``fresh`` closed it or ``now_ns`` is past
        its end by the completion grace.
        """
        ...


@runtime_checkable
class Snapshotting(Processor, Protocol):
    """A KPI processor that can say what its open periods stand at (the demo's live view)."""

    def snapshot(self, state: Any) -> list[Point]:
        """The potline points of the open periods as they stand."""
        ...
