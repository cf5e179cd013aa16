"""The rules and ``cellmon.yaml``'s plant and targets reloaded without a restart.

Engineers edit rules, and correct a potline's current efficiency or a target, while the
potline runs; a restart would cost a reconnect and a replay of the broker's queue. So the
running service watches ``rules/`` and the config file and, on a change or a SIGHUP,
validates everything as ``cellmon check`` would; valid changes take effect between two
batches, invalid ones are logged with ``file:line`` and what is in force stays. Of the
config file only the plant, the targets and the PFC factors reload
(``collector.config.live``): a change of anything else is refused with its reason.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from collector.config.live import apply_live, refusal
from collector.config.loader import load_config, load_rules
from collector.config.models import RULES_DIR, Config
from collector.config.yamlsource import ConfigError


class Refused(Exception):
    """A valid ``cellmon.yaml`` whose change needs a restart; the message says why."""


class RulesWatcher:
    """Tells when the rules or the config file changed, and loads them.

    ``poll`` gives a config to switch to; ``config_changed`` then says whether the config
    file was reloaded (all the processors are rebuilt) or only the rules. Changes are found
    by content, not by modification time: an editor that saves the same text, or a
    checkout that touches every file, reloads nothing.
    """

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.config_changed = False
        self._clock = clock
        self._directory = cfg.source.parent / RULES_DIR
        self._seen = self.fingerprint()
        self._seen_file = _digest([cfg.source])
        try:  # as in the file, not a shard's view of it: what an edit is compared with
            self._file = load_config(cfg.source)
        except ConfigError:  # broken since the start: the next valid edit is compared with this
            self._file = cfg
        self._next_check = clock() + cfg.rules_check_s

    def fingerprint(self) -> str:
        """A digest of the names and contents of every rules file."""
        return _digest(sorted(self._directory.glob("*.y*ml")))

    def poll(self, *, force: bool = False) -> Config | None:
        """The config with the new rules or settings when they changed (or ``force``), else None.

        Raises ``ConfigError`` when they changed and are invalid, and ``Refused`` when the
        config file changed what needs a restart: once per change.
        """
        now = self._clock()
        if not force:
            if not self.cfg.rules_check_s or now < self._next_check:
                return None
            self._next_check = now + self.cfg.rules_check_s
        seen, seen_file = self.fingerprint(), _digest([self.cfg.source])
        file_changed = seen_file != self._seen_file
        if seen == self._seen and not file_changed and not force:
            return None
        self._seen, self._seen_file = seen, seen_file
        if file_changed or force:
            new_file = load_config(self.cfg.source)
            why = refusal(self._file, new_file)
            if why is not None:
                raise Refused(why)
            changed = _live_part(self._file) != _live_part(new_file)
            self._file = new_file
            self.cfg = apply_live(self.cfg, new_file)
            self.config_changed = changed
        else:
            self.cfg = self.cfg.model_copy(update={"rules": load_rules(self.cfg.source)})
            self.config_changed = False
        return self.cfg


def _live_part(cfg: Config) -> tuple[object, ...]:
    return cfg.plant, cfg.targets, cfg.pfc


def _digest(paths: list[Path]) -> str:
    """A digest of the names and contents of files."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            content = path.read_bytes()
        except OSError:  # being replaced right now: the next check sees the new one
            content = b"?"
        digest.update(path.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()
