"""Rules reloaded without a restart: on SIGHUP, and when a rules file changes.

Engineers edit rules while the potline runs, and a restart would cost a reconnect and a
replay of the broker's queue. So the running service watches ``rules/`` and, on a change or
a SIGHUP, validates the whole set as ``cellmon check`` would; valid rules take effect
between two batches, invalid ones are logged with ``file:line`` and the rules in force stay.
Only the rules are reloaded: the config file holds connections and the state directory,
which a running service cannot change under itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from collector.config.loader import load_rules
from collector.config.models import RULES_DIR, Config


class RulesWatcher:
    """Tells when the rules files changed, and loads them; ``poll`` gives a config to switch to.

    Changes are found by content, not by modification time: an editor that saves the same
    text, or a checkout that touches every file, reloads nothing.
    """

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._clock = clock
        self._directory = cfg.source.parent / RULES_DIR
        self._seen = self.fingerprint()
        self._next_check = clock() + cfg.rules_check_s

    def fingerprint(self) -> str:
        """A digest of the names and contents of every rules file."""
        digest = hashlib.sha256()
        for path in sorted(self._directory.glob("*.y*ml")):
            try:
                content = path.read_bytes()
            except OSError:  # being replaced right now: the next check sees the new one
                content = b"?"
            digest.update(path.name.encode() + b"\0" + content + b"\0")
        return digest.hexdigest()

    def poll(self, *, force: bool = False) -> Config | None:
        """The config with the new rules when they changed (or ``force``), else None.

        Raises ``ConfigError`` when they changed and are invalid, once per change.
        """
        now = self._clock()
        if not force:
            if not self.cfg.rules_check_s or now < self._next_check:
                return None
            self._next_check = now + self.cfg.rules_check_s
        seen = self.fingerprint()
        if seen == self._seen and not force:
            return None
        self._seen = seen
        self.cfg = self.cfg.model_copy(update={"rules": load_rules(self.cfg.source)})
        return self.cfg
