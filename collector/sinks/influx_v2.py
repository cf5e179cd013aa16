"""Sink for the InfluxDB 2.x `/api/v2/write` API (InfluxDB 1.8+, 2.x, 3.x, VictoriaMetrics)."""

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from collector.sinks.base import SinkError, http_status_error


class InfluxV2Sink:
    """Writes each batch through influxdb-client's synchronous write API.

    The client keeps a pool of keep-alive connections and, built without a retry strategy,
    hands every failure straight back, so the drain loop alone decides when to retry.
    `token` is an InfluxDB 2.x token, or "user:password" for InfluxDB 1.8+.
    """

    def __init__(
        self,
        url: str,
        bucket: str,
        org: str,
        token: str | None,
        *,
        timeout_s: float,
        gzip: bool,
    ) -> None:
        self._url = url
        self._bucket = bucket
        self._org = org
        # influxdb-client defaults token to None (no token) but annotates it as str.
        self._client = InfluxDBClient(
            url=url,
            token=token,  # type: ignore[arg-type]
            org=org,
            enable_gzip=gzip,
            timeout=round(timeout_s * 1000),
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: bytes) -> None:
        """Send one batch; return once the server accepted it."""
        try:
            self._write_api.write(
                bucket=self._bucket,
                org=self._org,
                record=lines,
                # WritePrecision.NS is a plain str constant where the client expects the class.
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            raise _api_error(exc, self._url) from exc
        except urllib3.exceptions.HTTPError as exc:
            msg = f"cannot write to {self._url}: {exc}"
            raise SinkError(msg, retryable=True) from exc

    def close(self) -> None:
        """Close the client and its connections."""
        self._write_api.close()  # type: ignore[no-untyped-call]  # influxdb-client: unannotated
        self._client.close()  # type: ignore[no-untyped-call]  # influxdb-client: unannotated


def _api_error(exc: ApiException, url: str) -> SinkError:
    """Turn the client's exception into a SinkError carrying the server's own words."""
    if exc.response is None:  # the client failed before any answer (TLS, proxy)
        return SinkError(f"cannot write to {url}: {exc.reason}", retryable=True)
    # The client keeps InfluxDB's JSON "message" as text, any other body as raw bytes.
    message = exc.message
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return http_status_error(exc.status, text)
