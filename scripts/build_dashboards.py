"""Dashboards as code: writes config/grafana/dashboards/*.json from ``scripts/dashboards``.

Run after editing a board (``python scripts/build_dashboards.py``) and commit both;
``tests/scripts/dashboards/test_boards.py`` fails when the files and the code disagree (it
builds into a directory of its own, the optional argument), and
``tests/grafana/test_dashboards.py`` runs every panel's query against InfluxDB filled by the
pipeline.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory is first on the path, so the package is ``dashboards``
# here and ``scripts.dashboards`` to the tests, mypy and import-linter (its imports are relative).
from dashboards.boards import write

OUT = Path(__file__).resolve().parents[1] / "config" / "grafana" / "dashboards"

if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path)
