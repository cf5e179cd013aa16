"""The period ledger's rebase: which periods a recalculation hands to the live instance."""

from __future__ import annotations

from processors.kpi.ledger import Ledger, Period, PeriodKey

DAY1, DAY2, DAY3 = (PeriodKey("P1", "day", t) for t in (0, 10, 20))


def ledger(*periods: tuple[PeriodKey, int, str]) -> Ledger[str]:
    return Ledger({k: Period(end, acc) for k, end, acc in periods})


def test_rebase_replaces_open_periods_adds_new_ones_and_leaves_closed_ones() -> None:
    live = ledger((DAY1, 10, "live 1"), (DAY2, 20, "live 2"))
    live.close(DAY1)  # its point stands: the recalculation wrote the new one
    fresh = ledger((DAY1, 10, "fresh 1"), (DAY2, 20, "fresh 2"), (DAY3, 30, "fresh 3"))
    live.rebase(fresh, [DAY1, DAY2, DAY3])
    assert {k: p.acc for k, p in live.items()} == {DAY2: "fresh 2", DAY3: "fresh 3"}


def test_rebase_keeps_what_history_does_not_have_and_what_was_not_asked() -> None:
    live = ledger((DAY1, 10, "live 1"), (DAY2, 20, "live 2"))
    fresh = ledger((DAY2, 20, "fresh 2"))
    live.rebase(fresh, [DAY1])
    assert {k: p.acc for k, p in live.items()} == {DAY1: "live 1", DAY2: "live 2"}


def test_a_period_history_closed_is_closed_live_too() -> None:
    live = ledger((DAY1, 10, "live 1"), (DAY2, 20, "live 2"))
    fresh = ledger((DAY1, 10, "fresh 1"), (DAY2, 20, "fresh 2"))
    fresh.close(DAY1)  # every cell of history passed its end: its complete point is written
    live.rebase(fresh, [DAY1, DAY2])
    assert {k: p.acc for k, p in live.items()} == {DAY2: "fresh 2"}
    assert live.add(DAY1, 10, lambda: "late") is None  # nothing live writes undoes it
