"""Which changes of ``cellmon.yaml`` a running service takes, and which need a restart.

The plant's settings (current efficiencies, baselines, tariff, shifts), the targets and the
PFC factors only configure the processors, which the worker rebuilds between two batches
keeping their states: a CE corrected mid-shift must not cost a reconnect and a replay of
the broker's queue. Everything else holds a connection, a file or the split of the plant
(the MQTT session, the database, the state directory, the shards, and which potlines this
process owns): a running process cannot change those under itself, so such an edit is
refused with its reason and the running configuration stays.
"""

from __future__ import annotations

from collector.config.models import Config, ConfigFile

LIVE_SECTIONS = frozenset(("plant", "targets", "pfc"))
"""The sections of ``cellmon.yaml`` a running service reloads (the rules reload too)."""


def refusal(running_file: Config, new_file: Config) -> str | None:
    """Why ``new_file`` cannot be taken without a restart, or None when it can.

    Both are the config as loaded from the file (not a shard's view of it): the sections
    outside ``LIVE_SECTIONS`` must be equal, and the plant must keep its potlines.
    """
    for section in ConfigFile.model_fields:
        if section in LIVE_SECTIONS:
            continue
        if getattr(running_file, section) != getattr(new_file, section):
            return f"{section} changed (needs a restart)"
    before = {p.id for p in running_file.plant.potlines}
    after = {p.id for p in new_file.plant.potlines}
    if before != after:
        changes = [f"+{i}" for i in sorted(after - before)] + [
            f"-{i}" for i in sorted(before - after)
        ]
        return f"plant.potlines ids changed: {' '.join(changes)} (needs a restart)"
    return None


def apply_live(running: Config, new_file: Config) -> Config:
    """The running config with the live sections and the rules of ``new_file``.

    ``running`` may be a shard's view (``Config.shard``): it keeps its own potlines, each
    with its new settings, and everything else it has.
    """
    mine = {p.id for p in running.plant.potlines}
    plant = new_file.plant.model_copy(
        update={"potlines": [p for p in new_file.plant.potlines if p.id in mine]}
    )
    return running.model_copy(
        update={
            "plant": plant,
            "targets": new_file.targets,
            "pfc": new_file.pfc,
            "rules": new_file.rules,
        }
    )
