"""The building blocks of the config models: the strict base, value checks, and wording.

Shared by ``collector.config.models`` (the keys of ``cellmon.yaml``) and
``collector.config.rules`` (the rules files), so that both speak to the engineer the same way.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from collector.config.yamlsource import KeyPath

LEVEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
MAX_PORT = 65535


# Checks of single values. They raise ValueError, whose text becomes the message.


def _level_name(value: str) -> str:
    if not LEVEL_NAME.fullmatch(value):
        msg = f"must be 1 to 32 of A-Z a-z 0-9 _ - (it is a topic level and a tag), got {value!r}"
        raise ValueError(msg)
    return value


def _env_name(value: str) -> str:
    """Reject what looks like a pasted secret; never echo it, it may be the secret itself."""
    if not ENV_NAME.fullmatch(value):
        msg = (
            "must be the name of an environment variable (letters, digits, '_'), "
            "never the secret itself"
        )
        raise ValueError(msg)
    return value


def _unquoted_time(value: Any) -> Any:
    """Catch YAML 1.1 reading an unquoted 16:00 as the base-60 number 960."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        message = f'expected a time "HH:MM" in quotes, got the number {value}'
        if isinstance(value, int) and value >= 60:
            message += f" (YAML reads an unquoted {value // 60}:{value % 60:02d} as {value})"
        raise ValueError(message)
    return value


def _hhmm(value: str) -> str:
    if not HHMM.fullmatch(value):
        msg = f'expected a time "HH:MM" from "00:00" to "23:59", got {value!r}'
        raise ValueError(msg)
    return value


def zone(name: str) -> str:
    """An IANA time zone name, checked against the zone database shipped with tzdata."""
    try:
        zoneinfo.ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        close = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ", e.g. 'Asia/Shanghai' or 'UTC'"
        msg = f"not a zoneinfo time zone key: {name!r}{hint}"
        raise ValueError(msg) from None
    return name


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        msg = f"expected an http:// or https:// URL, got {value!r}"
        raise ValueError(msg)
    return value


def host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` split; an IPv6 host in brackets (``[::1]:9100``), as in a URL."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
        msg = f"expected HOST:PORT with a port from 1 to {MAX_PORT}, got {value!r}"
        raise ValueError(msg)
    return host, int(port)


def _listen(value: str) -> str:
    host_port(value)
    return value


def fail(problems: Sequence[tuple[KeyPath, str]], value: object) -> NoReturn:
    """Report problems found across a list at each item's own key, so each gets its line.

    pydantic-core merges a ValidationError raised inside a validator into the outer one,
    with each loc taken relative to the validated value.
    """
    msg = "cellmon"
    raise ValidationError.from_exception_data(
        msg,
        [
            InitErrorDetails(type=PydanticCustomError("cellmon", message), loc=loc, input=value)
            for loc, message in problems
        ],
    )


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]
NonEmpty = Annotated[str, Field(min_length=1)]
EnvName = Annotated[str, AfterValidator(_env_name)]
LevelName = Annotated[str, AfterValidator(_level_name)]
ShiftStart = Annotated[str, BeforeValidator(_unquoted_time), AfterValidator(_hhmm)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Listen = Annotated[str, AfterValidator(_listen)]


class Section(BaseModel):
    """Base of every config model.

    Frozen, because config and runtime are two things; strict, because YAML already types
    its values and ``port: yes`` silently becoming 1 helps nobody; unknown keys rejected,
    because a typo that is ignored is a setting that is silently at its default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


HUGE_BITS = 1000
"""YAML reads ``0xfff…`` of any length; past Python's 4300 digits an integer has no text."""


def show(value: Any) -> str:
    """A value as it looks in YAML, so the engineer recognises what they wrote."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and value.bit_length() > HUGE_BITS:  # repr would raise
        return f"a number of more than {int(HUGE_BITS * 0.30103)} digits"
    return repr(value)


def number(value: float) -> str:
    """A number as the engineer wrote it: 940, not 940.0."""
    return str(int(value)) if float(value).is_integer() else str(value)
