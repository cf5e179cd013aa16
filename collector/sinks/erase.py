"""Removing single points the database holds: what a recalculation no longer makes.

Line protocol can only add or overwrite a point, so a point whose series or time moved (an
anode effect that a backfill shows began a minute earlier) needs a delete of its own, on
the exact series and instant. InfluxDB 1.x takes an InfluxQL ``DELETE``; 2.x refuses
InfluxQL deletes through its 1.x compatibility endpoint and has a delete API with a
predicate instead. A failure is an error with the server's words, like a refused query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import urllib3

from collector.sinks.influxql import InfluxQL, QueryError, quoted

if TYPE_CHECKING:
    from collector.config.models import Config

NS = 1_000_000_000


class Eraser:
    """Deletes points by measurement, every tag of their series, and time."""

    def __init__(self, cfg: Config, query: InfluxQL) -> None:
        """``query`` has the credentials and connection pool; 2.x also needs the org."""
        self.query = query
        influx = cfg.influx
        self.v2 = influx.api == "v2"
        base = influx.url.rstrip("/")
        self.delete_url = f"{base}/api/v2/delete?org={influx.org}&bucket={influx.bucket}"

    def erase(self, measurement: str, tags: Sequence[tuple[str, str]], time_ns: int) -> None:
        """Delete the one point; raises ``QueryError`` when the database refuses."""
        if self.v2:
            self._delete_api(measurement, tags, time_ns)
            return
        where = " AND ".join(f'"{k}" = {quoted(v)}' for k, v in tags)
        self.query.series(
            f'DELETE FROM "{measurement}" WHERE {where} AND time >= {time_ns} AND time <= {time_ns}'
        )

    def _delete_api(self, measurement: str, tags: Sequence[tuple[str, str]], time_ns: int) -> None:
        """2.x: start = stop = the point's instant, as the delete API's own example has it."""
        predicate = " and ".join(
            f'{k}="{_escaped(v)}"' for k, v in (("_measurement", measurement), *tags)
        )
        body = {"start": _rfc3339(time_ns), "stop": _rfc3339(time_ns), "predicate": predicate}
        headers = {**self.query.headers, "Content-Type": "application/json"}
        try:
            reply = self.query.http.request(
                "POST", self.delete_url, body=orjson.dumps(body), headers=headers
            )
        except urllib3.exceptions.HTTPError as err:
            msg = f"cannot reach InfluxDB at {self.delete_url}: {err}"
            raise QueryError(msg) from err
        if reply.status != 204:
            why = reply.data.decode(errors="replace").strip()[:200] or "no error text"
            msg = f"InfluxDB refused a delete: HTTP {reply.status}: {why}"
            raise QueryError(msg)


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _rfc3339(time_ns: int) -> str:
    seconds = datetime.fromtimestamp(time_ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{seconds}.{time_ns % NS:09d}Z"
