"""Real Mosquitto, InfluxDB 1.x and VictoriaMetrics servers for integration tests.

Each server runs as a subprocess bound to 127.0.0.1 on a free port, keeps its data and its
log in a directory the caller owns, and can be stopped and started again on the same port
with the same data, so a test can simulate an outage. Plain Python: usable outside pytest.

    with InfluxV1(Path(tempfile.mkdtemp())) as influx:
        influx.create_database("cellmon")
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_BYTES = 4000
INSTALL_HINT = "run scripts/ensure-servers.sh to install mosquitto, influxdb and victoria-metrics"
# Debian installs mosquitto in sbin, which is not on an ordinary user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
# Loopback requests must never go to an http_proxy from the environment.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# What docs/operations.md recommends a plant sets on its broker: queue enough for cellmon to
# be down for minutes at full rate instead of Mosquitto's default of 1000 messages.
PLANT_BROKER_SETTINGS = "max_queued_messages 1000000\nmax_queued_bytes 0\n"


class ServerError(RuntimeError):
    """A server is not installed, did not come up, or refused a helper's request."""


# Ports handed out in this process. The kernel may offer a port again as soon as the probe
# closes, so two servers (or influxd's HTTP and RPC listeners) could be given the same one.
_GIVEN: set[int] = set()


def free_port() -> int:
    """Return a loopback port nobody listens on right now and this process never gave out."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def find_binary(name: str) -> str:
    """Return the path of a server's executable, or fail with how to install it."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        msg = f"{name} not found: {INSTALL_HINT}"
        raise ServerError(msg)
    return path


def port_open(host: str, port: int) -> bool:
    """Tell whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Send one request and return (status, body), whatever the status."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with DIRECT.open(request, timeout=10.0) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answers(url: str, status: int) -> bool:
    """Tell whether a GET of url returns status (a readiness probe)."""
    try:
        return http("GET", url)[0] == status
    except OSError:
        return False


@dataclass
class _Server:
    """One server process: its data, config and log live in `directory`."""

    name: ClassVar[str]

    directory: Path
    port: int = field(default_factory=free_port)
    host: str = field(default=HOST, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start the server and return once it serves requests."""
        if self._process is not None:
            msg = f"{self.name} is already running"
            raise ServerError(msg)
        argv = self._argv()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(self._process, timeout_s)

    def stop(self) -> None:
        """Stop the server gracefully (it saves its data), killing it if it hangs."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self) -> str:
        """Return the end of the server's output, to explain why it failed."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if process.poll() is not None:
                self._fail(f"exited with code {process.returncode} while starting")
            if time.monotonic() > deadline:
                self._fail(f"not ready after {timeout_s:g} s")
            time.sleep(0.05)

    def _fail(self, why: str) -> NoReturn:
        self.stop()
        msg = (
            f"{self.name} on {self.host}:{self.port} {why}; log {self.log_path}:\n{self.log_tail()}"
        )
        raise ServerError(msg)

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class BrokerTls:
    """A TLS-only listener: the CA that signed the server certificate, the cert and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass
class Mosquitto(_Server):
    """Mosquitto 2 with anonymous access and persistence, otherwise default broker limits.

    The defaults (max_inflight_messages 20, max_queued_messages 1000) are kept on purpose:
    cellmon must run at full speed against a broker nobody tuned. Persistence is saved on a
    graceful stop, so a persistent session and its queued QoS 1 messages survive
    `stop()`/`start()`.

    For the security tests, as a plant runs it: `tls` makes the only listener a TLS one,
    `users` (name -> password) refuses anonymous clients and logs in these users only, and
    `acl_file` limits what each of them may read and write.
    """

    name: ClassVar[str] = "mosquitto"

    extra_config: str = ""
    tls: BrokerTls | None = None
    users: dict[str, str] = field(default_factory=dict)
    acl_file: Path | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Started as root, Mosquitto switches to user "mosquitto", who cannot write the
        # persistence file into our directory; naming the current user keeps it as is.
        user = pwd.getpwuid(os.getuid()).pw_name
        self._config_path.write_text(
            f"listener {self.port} {self.host}\n"
            + self._tls_config()
            + self._access_config()
            + "persistence true\n"
            f"persistence_location {self.directory}/\n"
            f"user {user}\n"
            "log_dest stderr\n" + self.extra_config
        )

    def _tls_config(self) -> str:
        if self.tls is None:
            return ""
        return (
            f"cafile {self.tls.ca_file}\n"
            f"certfile {self.tls.cert_file}\n"
            f"keyfile {self.tls.key_file}\n"
        )

    def _access_config(self) -> str:
        acl = f"acl_file {self.acl_file}\n" if self.acl_file else ""
        if not self.users:
            return "allow_anonymous true\n" + acl
        passwords = self.directory / "passwords"
        passwords.unlink(missing_ok=True)
        for name, password in self.users.items():
            create = [] if passwords.exists() else ["-c"]
            argv = [find_binary("mosquitto_passwd"), *create, "-b", str(passwords), name, password]
            subprocess.run(argv, check=True, capture_output=True)
        return f"allow_anonymous false\npassword_file {passwords}\n" + acl

    @property
    def _config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    def _argv(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self._config_path)]

    def _ready(self) -> bool:
        return port_open(self.host, self.port)


@dataclass
class InfluxV1(_Server):
    """InfluxDB 1.x (`influxd`), quiet, with no self-monitoring and no phone-home.

    Set `admin` to "user:password" to enable authentication: the user is created as an
    admin on start and the helpers authenticate as it.
    """

    name: ClassVar[str] = "influxd"

    rpc_port: int = field(default_factory=free_port)
    admin: str | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._config_path.write_text(self._config())

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start influxd and, with `admin`, make sure the admin user exists."""
        super().start(timeout_s)
        if self.admin is not None:
            user, password = self.admin.split(":", 1)
            privileges = "WITH ALL PRIVILEGES"
            self._statement(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' {privileges}")

    def create_database(self, name: str) -> None:
        self._statement(f'CREATE DATABASE "{name}"')

    def query(self, influxql: str, db: str) -> list[dict[str, Any]]:
        """Run a query; return every row of every series as one dict of column -> value.

        The tags of a GROUP BY series are added as columns; `SELECT *` lists them anyway.
        `time` is an integer of nanoseconds. A query that matches nothing returns [].
        """
        results = self._statement(influxql, db=db, epoch="ns")
        return [
            dict(zip(series["columns"], values, strict=True)) | series.get("tags", {})
            for result in results
            for series in result.get("series", [])
            for values in series["values"]
        ]

    def _statement(self, influxql: str, **params: str) -> list[dict[str, Any]]:
        body = urllib.parse.urlencode({"q": influxql, **params}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **self._auth_header()}
        status, raw = http("POST", f"{self.url}/query", body, headers)
        answer = json.loads(raw) if raw else {}
        errors = [answer.get("error")] + [r.get("error") for r in answer.get("results", [])]
        if status != 200 or any(errors):
            msg = f"influxd refused {influxql!r}: HTTP {status} {raw.decode()}"
            raise ServerError(msg)
        return list(answer["results"])

    def _auth_header(self) -> dict[str, str]:
        if self.admin is None:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(self.admin.encode()).decode()}

    @property
    def _config_path(self) -> Path:
        return self.directory / "influxd.conf"

    def _config(self) -> str:
        return f"""\
# Upstream spells it reporting-disabled; Debian's build renamed it reporting-enabled.
reporting-disabled = true
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{self.directory}/meta"
  logging-enabled = false

[data]
  dir = "{self.directory}/data"
  wal-dir = "{self.directory}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "{self.host}:{self.port}"
  auth-enabled = {str(self.admin is not None).lower()}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""

    def _argv(self) -> list[str]:
        return [find_binary("influxd"), "run", "-config", str(self._config_path)]

    def _ready(self) -> bool:
        return answers(f"{self.url}/ping", 204)


@dataclass
class VictoriaMetrics(_Server):
    """Single-node VictoriaMetrics, our stand-in for InfluxDB 2.x's `/api/v2/write`.

    What it does to InfluxDB line protocol (checked on 1.79.5):
    - `meas,tag=v field=1` becomes the series `meas_field{tag="v"}`; `/write?db=x` adds the
      label `db="x"`, `/api/v2/write?bucket=b` adds none.
    - timestamps are cut to milliseconds; values are floats: `300i` is 300.0, `true` is 1.0,
      and a string field is stored as 0.
    - a malformed line is logged and skipped, and the request still answers 204: only a
      broken request (bad gzip, unknown path) gets a 400.
    - samples older than the retention period are dropped silently, so we keep 100 years
      to accept hand-written timestamps from any year.
    - it keeps every sample, also two with the same timestamp, unless deduplication is on:
      with `-dedup.minScrapeInterval=1ms`, as here, one sample per timestamp is left. On
      1.79.5 the last written wins, as in InfluxDB; newer releases document keeping the
      biggest value instead, so only an identical rewrite is portable.
    """

    name: ClassVar[str] = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Return every stored series matching `match`, sorted, as exported by the server.

        Each item is {"metric": {"__name__": ..., label: value}, "values": [...],
        "timestamps": [ms, ...]}. Recent writes are flushed first, so they are included.
        """
        status, raw = http("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            msg = f"victoria-metrics force_flush: HTTP {status} {raw.decode()}"
            raise ServerError(msg)
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        status, raw = http("GET", f"{self.url}/api/v1/export?{query}")
        if status != 200:
            msg = f"victoria-metrics export {match}: HTTP {status} {raw.decode()}"
            raise ServerError(msg)
        series = [json.loads(line) for line in raw.splitlines() if line]
        return sorted(series, key=lambda item: json.dumps(item["metric"], sort_keys=True))

    def _argv(self) -> list[str]:
        return [
            find_binary("victoria-metrics"),
            f"-storageDataPath={self.directory}/data",
            f"-httpListenAddr={self.host}:{self.port}",
            "-loggerLevel=ERROR",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",
            "-search.latencyOffset=0s",
            "-search.disableCache",
        ]

    def _ready(self) -> bool:
        return answers(f"{self.url}/health", 200)
