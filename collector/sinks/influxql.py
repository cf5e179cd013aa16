"""Reading the database back with InfluxQL over HTTP, as Grafana's datasource does.

``/query`` answers on InfluxDB 1.x, on 2.x through its DBRP mapping (the bucket's name as
the database, the token as ``Authorization: Token``) and on 3.x, so the report and the
recalculation read every supported database the same way. A refusal (a wrong password, a
database that does not exist, a query the server rejects) is an error with the server's
own words, never an empty answer: an empty answer reads as "no data" and would be trusted.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any, NoReturn

import orjson
import urllib3

if TYPE_CHECKING:
    from collector.config.models import Config


class QueryError(RuntimeError):
    """The database could not be reached, refused the query, or answered with an error."""


class InfluxQL:
    """One database's ``/query`` endpoint, with the sink's credentials."""

    def __init__(self, cfg: Config, *, timeout_s: float | None = None) -> None:
        """``timeout_s``: per request, by default the sink's (an hour of history takes longer)."""
        influx = cfg.influx
        self.url = f"{influx.url.rstrip('/')}/query"
        self.db = influx.database if influx.api == "v1" else influx.bucket
        token = cfg.secret(influx.token_env)
        self.headers: dict[str, str] = {}
        if token and influx.api == "v2":
            self.headers["Authorization"] = f"Token {token}"
        elif token:
            self.headers |= urllib3.make_headers(basic_auth=token)
        # One attempt: the operator runs the command again, and a wrong URL fails at once.
        self.http = urllib3.PoolManager(timeout=timeout_s or influx.timeout_s, retries=False)

    def series(self, influxql: str) -> list[dict[str, Any]]:
        """The series of one query: each ``{"name", "tags", "columns", "values"}``."""
        return self._series(self._post(influxql, "application/json"))

    def csv(self, influxql: str) -> bytes:
        """The rows of one query as InfluxDB's CSV: ``name,tags,time,<columns>``.

        ``tags`` is the series key's ``k=v,...``, escaped as in line protocol.

        Raw samples are read this way: a C parser turns an hour of a potline into arrays in a
        third of the time JSON takes, and lets the processing thread run meanwhile. A server
        that answers JSON anyway has its series written as the same CSV. CSV has no place
        for a statement's error (InfluxDB 1.x leaves it out), so an empty answer is asked
        again as JSON, which carries it.
        """
        reply = self._post(influxql, "application/csv")
        kind = reply.headers.get("Content-Type", "")
        if reply.status != 200 or "json" in kind:
            return _as_csv(self._series(reply))
        if reply.data.startswith(b"error\n"):  # the whole request's error
            self._refused(reply, reply.data[6:].decode(errors="replace").strip())
        return reply.data if reply.data.strip() else _as_csv(self.series(influxql))

    def _post(self, influxql: str, accept: str) -> urllib3.BaseHTTPResponse:
        try:
            return self.http.request(
                "POST",
                self.url,
                fields={"q": influxql, "db": self.db, "epoch": "ns"},
                headers=self.headers | {"Accept": accept},
            )
        except urllib3.exceptions.HTTPError as err:
            msg = f"cannot reach InfluxDB at {self.url}: {err}"
            raise QueryError(msg) from err

    def _series(self, reply: urllib3.BaseHTTPResponse) -> list[dict[str, Any]]:
        # InfluxDB 1.x answers a wrong password with 401 and an unknown database with 200 and
        # an ``error`` in the result, so both places are read.
        answer = _answer(reply.data)
        error = answer.get("error") or next(
            (r["error"] for r in answer.get("results", []) if "error" in r), None
        )
        if reply.status != 200 or error:
            self._refused(reply, error)
        return [s for r in answer.get("results", []) for s in r.get("series", [])]

    def _refused(self, reply: urllib3.BaseHTTPResponse, error: str | None) -> NoReturn:
        why = error or reply.data.decode(errors="replace").strip()[:200] or "no error text"
        msg = f"InfluxDB at {self.url} refused the query: HTTP {reply.status}: {why}"
        raise QueryError(msg)

    def rows(self, influxql: str) -> list[dict[str, Any]]:
        """Every row of every series as one dict of column -> value, the series' tags added."""
        return [
            dict(zip(s["columns"], v, strict=True)) | s.get("tags", {})
            for s in self.series(influxql)
            for v in s["values"]
        ]


def _answer(body: bytes) -> dict[str, Any]:
    """The JSON body of a reply; a proxy's HTML error page is no answer."""
    try:
        answer = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return answer if type(answer) is dict else {}


def _as_csv(series: list[dict[str, Any]]) -> bytes:
    """JSON series as InfluxDB writes them in CSV (one header, from the first series)."""
    if not series:
        return b""
    out = io.StringIO()
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["name", "tags", *series[0]["columns"]])
    for s in series:
        key = ",".join(f"{_key(k)}={_key(v)}" for k, v in sorted(s.get("tags", {}).items()))
        rows.writerows([s.get("name", ""), key, *row] for row in s["values"])
    return out.getvalue().encode()


def _key(text: str) -> str:
    """A tag key or value escaped as in a series key."""
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def quoted(value: str) -> str:
    """A tag value as an InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
