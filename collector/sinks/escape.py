r"""Names and strings in InfluxDB line protocol: escaped exactly, or refused.

Apart from the encoder (``collector.sinks.lineproto``) so that the MQTT process, which
checks the names a rule would write, loads none of numpy.

What was accepted must come back from InfluxDB unchanged, so each part of a line is
escaped the way InfluxDB 1.x parses it, found against the real server (see
tests/collector/sinks/test_lineproto.py):

- tag keys and values: a ``\`` before ``,``, ``=`` or a space escapes it and is removed;
  every other backslash is kept as it is. The scanner takes any delimiter right after a
  backslash for an escaped one.
- field keys: the same three and ``"`` are escaped and unescaped, left to right; but the
  scanner lets a backslash escape whatever follows it, backslashes included.
- string field values: ``\`` and ``"`` are escaped.

Some text therefore cannot be carried at all, and ``Unencodable`` names it so that the
caller can keep it aside instead of writing a line InfluxDB refuses or stores differently:

- a tag key, tag value or field key that ends with a backslash (it would escape the
  delimiter after it);
- a field key with an odd number of backslashes right before ``,``, ``=`` or a space;
- ``time`` as a tag key (refused) or a field key (silently dropped);
- empty keys and measurements, control characters (category Cc: a newline would split
  the line) and lone surrogates (no UTF-8) anywhere, an integer beyond 64 bits.
"""

from __future__ import annotations

import re

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_FIELD_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", '"': r"\""})
_UNCARRIED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ODD_BACKSLASHES_BEFORE_DELIMITER = re.compile(r"(?<!\\)\\(?:\\\\)*[,= ]")
RESERVED_KEY = "time"
FIELD_KEYS: dict[str, str] = {}
"""Field keys checked and escaped, by key: the encoder looks here before it calls."""
_FIELD_KEYS_LIMIT = 10_000


class Unencodable(ValueError):
    """A name or value that line protocol cannot carry exactly; the message says which."""


def check_text(text: str, what: str) -> None:
    """Raise ``Unencodable`` for a control character or lone surrogate in any text."""
    if _UNCARRIED.search(text):
        msg = f"{what} {text!r} holds a control character or a lone surrogate"
        raise Unencodable(msg)


def check_name(text: str, what: str) -> None:
    """Raise ``Unencodable`` for a name (measurement, key, tag value) no line can carry."""
    if not text:
        msg = f"empty {what}"
        raise Unencodable(msg)
    check_text(text, what)
    if text[-1] == "\\":
        msg = f"{what} {text!r} ends with a backslash"
        raise Unencodable(msg)


def escape_tag(text: str, what: str = "tag value") -> str:
    """Escape a tag key or value; raises ``Unencodable``."""
    check_name(text, what)
    return text.translate(_TAG_ESCAPES)


def escape_field_key(key: str) -> str:
    """Escape a field key; raises ``Unencodable``.

    KPI and alarm points repeat a few dozen keys in every batch: each is checked once.
    """
    escaped = FIELD_KEYS.get(key)
    if escaped is not None:
        return escaped
    escaped = _escape_new_field_key(key)
    if len(FIELD_KEYS) >= _FIELD_KEYS_LIMIT:
        FIELD_KEYS.clear()
    FIELD_KEYS[key] = escaped
    return escaped


def _escape_new_field_key(key: str) -> str:
    check_name(key, "field key")
    if key == RESERVED_KEY:
        msg = "field key 'time' is dropped by InfluxDB"
        raise Unencodable(msg)
    if _ODD_BACKSLASHES_BEFORE_DELIMITER.search(key):
        msg = f"field key {key!r} has an odd run of backslashes before , = or space"
        raise Unencodable(msg)
    return key.translate(_FIELD_KEY_ESCAPES)
