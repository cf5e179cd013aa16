"""The committed boards are what scripts/dashboards builds, and they lay out as drawn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.dashboards.boards import BOARDS, render
from tests.harness import ROOT

COMMITTED = ROOT / "config" / "grafana" / "dashboards"


def test_regenerating_the_boards_changes_nothing(tmp_path: Path) -> None:
    """The command of docs/dashboards.md, run from elsewhere into a directory of its own."""
    out = tmp_path / "dashboards"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_dashboards.py"), str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    built = sorted(out.glob("*.json"))
    assert [p.name for p in built] == sorted(p.name for p in COMMITTED.glob("*.json"))
    for path in built:
        committed = (COMMITTED / path.name).read_text(encoding="utf-8")
        assert path.read_text(encoding="utf-8") == committed, (
            f"run scripts/build_dashboards.py ({path.name})"
        )


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_keep_their_place(name: str) -> None:
    """No two panels overlap and all fit the 24 columns.

    The SDK's Dashboard.with_panel moves a panel left at x 0, y 0 to the next free place,
    so a panel meant for the top left corner must come first.
    """
    board = json.loads(render()[f"{name}.json"])
    taken: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} over {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]
    assert [p["id"] for p in board["panels"]] == list(range(1, len(board["panels"]) + 1))
