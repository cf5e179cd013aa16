"""Every board, by the name of its file, and the JSON Grafana provisions from it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from .anodes import anodes
from .cell import cell_detail
from .energy import energy
from .health import health
from .overview import overview
from .savings import savings

BOARDS: dict[str, Callable[[], model.Dashboard]] = {
    "overview": overview,
    "cell": cell_detail,
    "anodes": anodes,
    "energy": energy,
    "health": health,
    "savings": savings,
}


def render() -> dict[str, str]:
    """File name → JSON text of every board (UTF-8: the units and titles have µΩ, ×, …)."""
    return {
        f"{name}.json": json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
        for name, build in BOARDS.items()
    }


def write(directory: Path) -> list[Path]:
    """Write every board into ``directory``; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
