"""Security as a plant runs it, proven with cellmon's own clients against real servers.

Mosquitto has a TLS-only listener with a certificate of a CA made for the test, refuses
anonymous clients, knows the users of the compose stack by password and applies its ACL
(``config/mosquitto/acl``); InfluxDB 1.x has authentication enabled. ``cellmon run`` must
carry samples through both, refuse an untrusted broker, say plainly when a password is
wrong, keep the points of a refused database until the password is fixed, and never write
a secret anywhere.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from collector.sinks.influx_v1 import InfluxV1Sink
from tests.certs import TestCa
from tests.conftest import serve
from tests.harness import ROOT, Pipeline, publish_all, wait_for, write_config
from tests.servers import BrokerTls, InfluxV1, Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mqtt_client")]

# Each secret is new at every run, so finding one in a file can only mean cellmon wrote it.
CELLMON_PASSWORD = secrets.token_hex(12)
CONTROLLER_PASSWORD = secrets.token_hex(12)
INFLUX_PASSWORD = secrets.token_hex(12)
INFLUX_LOGIN = f"cellmon:{INFLUX_PASSWORD}"
WRONG_MQTT_PASSWORD = secrets.token_hex(12)
WRONG_INFLUX_LOGIN = f"cellmon:{secrets.token_hex(12)}"
CONTROLLER = ("controller", CONTROLLER_PASSWORD)

CELLS = ["C01", "C02", "C03"]
STEPS = 40
T0_MS = (int(time.time()) - 2 * 86_400) * 1000
# Refusals the broker must log before a refused cellmon is judged: enough to see the backoff.
REFUSALS = 4


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory, ca: TestCa) -> Iterator[Mosquitto]:
    """The compose stack's broker: TLS only, its two users, its ACL."""
    directory = tmp_path_factory.mktemp("mosquitto-secure")
    cert, key = ca.issue_server(directory / "tls")
    broker = Mosquitto(
        directory,
        tls=BrokerTls(ca.cert, cert, key),
        users={"cellmon": CELLMON_PASSWORD, "controller": CONTROLLER_PASSWORD},
        acl_file=ROOT / "config" / "mosquitto" / "acl",
    )
    yield from serve(broker)


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxV1]:
    """InfluxDB 1.x with authentication on; cellmon's user is its admin."""
    yield from serve(InfluxV1(tmp_path_factory.mktemp("influxd-auth"), admin=INFLUX_LOGIN))


@pytest.fixture
def database(auth_influx: InfluxV1) -> str:
    name = f"test_{secrets.token_hex(6)}"
    auth_influx.create_database(name)
    return name


def secure_config(
    directory: Path, broker: Mosquitto, influx: InfluxV1, database: str, ca_file: Path
) -> Path:
    """cellmon's config for the secure stack: login and TLS, credentials from the environment."""
    return write_config(
        directory,
        mqtt_port=broker.port,
        influx_url=influx.url,
        database=database,
        mqtt_options=(
            "  username_env: MQTT_USERNAME\n"
            "  password_env: MQTT_PASSWORD\n"
            "  reconnect_max_s: 1\n"
            f"  tls: {{ca_file: {ca_file}}}\n"
        ),
        token_env="INFLUX_TOKEN",
        sink_options="  retry_max_s: 1\n  shutdown_s: 1\n",  # a refused stop is quick
    )


def secrets_env(mqtt_password: str = CELLMON_PASSWORD, influx: str = INFLUX_LOGIN) -> dict:
    return {"MQTT_USERNAME": "cellmon", "MQTT_PASSWORD": mqtt_password, "INFLUX_TOKEN": influx}


def sample(c: int, k: int) -> dict:
    """Sample k of cell index c: a voltage of its own, so a mixed-up point shows."""
    voltage = round(4.1 + 0.01 * c + 0.001 * k, 4)
    return {"ts": T0_MS + k * 1000, "cell_voltage_v": voltage, "line_current_ka": 300.0}


def stream() -> list[tuple[str, bytes]]:
    """The controllers' telemetry: ``STEPS`` samples of each cell, one message each."""
    return [
        (f"smelter/P1/{cell}/telemetry", orjson.dumps(sample(c, k)))
        for k in range(STEPS)
        for c, cell in enumerate(CELLS)
    ]


def want_rows() -> set[tuple[str, int, float]]:
    """Every sample of ``stream()`` as it must read back: (cell, time ns, voltage)."""
    return {
        (cell, sample(c, k)["ts"] * 1_000_000, sample(c, k)["cell_voltage_v"])
        for k in range(STEPS)
        for c, cell in enumerate(CELLS)
    }


def rows(influx: InfluxV1, db: str) -> set[tuple[str, int, float]]:
    found = influx.query("SELECT voltage_v FROM cell GROUP BY cell", db)
    return {(r["cell"], r["time"], r["voltage_v"]) for r in found}


def outbox_lines(directory: Path) -> int:
    """Lines waiting in the journal's outbox; 0 before the worker has made it.

    Opened read-only, so that looking never creates the journal under cellmon's feet.
    """
    journal = directory / "state" / "journal.sqlite"
    try:
        with sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT total(lines) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:  # no journal, or no outbox table, yet
        return 0


def broker_lines(broker: Mosquitto, since: int, marker: str) -> int:
    """How many lines of the broker's log after byte ``since`` contain ``marker``."""
    with broker.log_path.open("rb") as f:
        f.seek(since)
        return sum(marker in line for line in f.read().decode(errors="replace").splitlines())


def test_tls_login_and_acl_carry_samples_to_an_influx_with_auth(
    tmp_path: Path, ca: TestCa, secure_broker: Mosquitto, auth_influx: InfluxV1, database: str
) -> None:
    """The whole secure path works, and the ACL is in force: cellmon may not publish telemetry.

    The forged sample is acknowledged (MQTT 3.1.1 has no way to say no) before the
    controller connects, so had the broker let it through it would reach cellmon first.
    """
    config = secure_config(tmp_path, secure_broker, auth_influx, database, ca.cert)
    pipeline = Pipeline(config, tmp_path / "cellmon.log", secrets_env())
    pipeline.start()
    forged = [("smelter/P1/C09/telemetry", orjson.dumps(sample(9, 0)))]
    publish_all(secure_broker.port, forged, login=("cellmon", CELLMON_PASSWORD), ca_file=ca.cert)
    publish_all(secure_broker.port, stream(), login=CONTROLLER, ca_file=ca.cert)

    want = want_rows()
    wait_for(lambda: len(rows(auth_influx, database)) >= len(want), 60, pipeline.new_log)
    assert pipeline.terminate() == 0
    assert rows(auth_influx, database) == want  # and nothing of C09


@pytest.mark.parametrize(
    ("case", "said", "broker_says"),
    [
        ("unknown CA", "could not be verified", "alert unknown ca"),
        ("wrong password", "bad username or password", "not authorised"),
    ],
)
def test_a_refused_connection_is_said_once_and_backed_off(
    tmp_path: Path,
    ca: TestCa,
    secure_broker: Mosquitto,
    auth_influx: InfluxV1,
    database: str,
    case: str,
    said: str,
    broker_says: str,
) -> None:
    """A broker that cellmon must not trust, or that refuses its password: one clear line.

    The broker's log counts the attempts, looked at every 0.2 s or so. A client retrying
    in a loop makes a dozen or more between two looks (measured here: 15 with the backoff
    cut a thousandfold); cellmon waits at least 0.4 s between attempts, so once the count
    reaches ``REFUSALS`` it is one or two past it at most. The reason is logged once, with
    no traceback.
    """
    rogue = TestCa.create(tmp_path / "rogue-ca", "rogue CA")  # never signed the broker's cert
    ca_file = rogue.cert if case == "unknown CA" else ca.cert
    password = WRONG_MQTT_PASSWORD if case == "wrong password" else CELLMON_PASSWORD
    config = secure_config(tmp_path, secure_broker, auth_influx, database, ca_file)
    pipeline = Pipeline(config, tmp_path / "cellmon.log", secrets_env(mqtt_password=password))
    since = secure_broker.log_path.stat().st_size
    pipeline.launch()
    refused = lambda: broker_lines(secure_broker, since, broker_says)  # noqa: E731
    wait_for(lambda: refused() >= REFUSALS, 30, pipeline.new_log)
    attempts = refused()
    log = pipeline.new_log()
    pipeline.terminate()

    assert attempts <= REFUSALS + 2, f"{attempts} attempts: retried without backing off"
    assert "Traceback" not in log
    failures = [line for line in log.splitlines() if "retrying with backoff" in line]
    assert len(failures) == 1, log
    assert said in failures[0]
    assert "connected to" not in log
    assert len(log.splitlines()) < 10, log


def test_a_refused_database_password_keeps_the_points_until_it_is_fixed(
    tmp_path: Path, ca: TestCa, secure_broker: Mosquitto, auth_influx: InfluxV1, database: str
) -> None:
    """With the wrong InfluxDB password the points wait in the journal; with the right one,
    on the same state directory, every one arrives once.

    InfluxDB would overwrite a point written twice, so "once" is read from cellmon's own
    counters, which live in the journal: each sample accepted once, no duplicate.
    """
    config = secure_config(tmp_path, secure_broker, auth_influx, database, ca.cert)
    refused = Pipeline(config, tmp_path / "cellmon.log", secrets_env(influx=WRONG_INFLUX_LOGIN))
    refused.start()
    publish_all(secure_broker.port, stream(), login=CONTROLLER, ca_file=ca.cert)
    want = want_rows()
    wait_for(lambda: outbox_lines(tmp_path) >= len(want), 60, refused.new_log)
    wait_for(lambda: "authorization failed" in refused.new_log(), 30, refused.new_log)
    assert "HTTP 401" in refused.new_log()
    assert rows(auth_influx, database) == set()
    assert refused.terminate() == 3  # stopped with the points still buffered

    fixed = Pipeline(config, tmp_path / "cellmon.log", secrets_env())
    fixed.start()
    wait_for(lambda: len(rows(auth_influx, database)) >= len(want), 60, fixed.new_log)
    assert fixed.terminate() == 0
    assert rows(auth_influx, database) == want
    assert outbox_lines(tmp_path) == 0
    metrics = auth_influx.query("SELECT * FROM cellmon ORDER BY time DESC LIMIT 1", database)[0]
    assert (metrics["accepted"], metrics["duplicates"], metrics["buffered"]) == (len(want), 0, 0)


def test_no_secret_in_any_file_cellmon_writes(
    tmp_path: Path, ca: TestCa, secure_broker: Mosquitto, auth_influx: InfluxV1, database: str
) -> None:
    """After a wrong MQTT password, a wrong InfluxDB password and a good run, with a dead
    letter and a line the database refuses, no file under the test's directory (config,
    log, journal, dead letters, rejected lines) holds any secret, plain or as the basic
    authentication header would carry it.
    """
    config = secure_config(tmp_path, secure_broker, auth_influx, database, ca.cert)
    log = tmp_path / "cellmon.log"
    since = secure_broker.log_path.stat().st_size
    locked_out = Pipeline(config, log, secrets_env(mqtt_password=WRONG_MQTT_PASSWORD))
    locked_out.launch()
    wait_for(
        lambda: broker_lines(secure_broker, since, "not authorised") >= 2, 30, locked_out.new_log
    )
    locked_out.terminate()

    # A string where cellmon writes a number: InfluxDB refuses the one line with "probe".
    conflict = f'cell,potline=P1,cell=C04 probe="text" {T0_MS * 1_000_000}\n'
    admin = InfluxV1Sink(auth_influx.url, database, INFLUX_LOGIN, timeout_s=10, gzip=False)
    admin.write(conflict.encode())
    refused = Pipeline(config, log, secrets_env(influx=WRONG_INFLUX_LOGIN))
    refused.start()
    bad = [
        ("smelter/P1/C04/telemetry", b"{not json"),
        ("smelter/P1/C04/telemetry", orjson.dumps({**sample(4, 0), "probe": 1.5})),
    ]
    publish_all(secure_broker.port, bad + stream(), login=CONTROLLER, ca_file=ca.cert)
    wait_for(lambda: "authorization failed" in refused.new_log(), 30, refused.new_log)
    assert refused.terminate() == 3

    fixed = Pipeline(config, log, secrets_env())
    fixed.start()
    state = tmp_path / "state"
    wait_for(
        lambda: (state / "rejected.lp").exists() and outbox_lines(tmp_path) == 0, 60, fixed.new_log
    )
    assert fixed.terminate() == 0

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {state / "deadletter.jsonl", state / "rejected.lp", log} <= set(files)
    for path in files:
        assert_no_secret(path)


def assert_no_secret(path: Path) -> None:
    """Fail if the file holds a password, or a login as basic authentication carries it.

    The failure names the secret, never shows it: a test's output is a log too.
    """
    content = path.read_bytes()
    forms = {
        "cellmon's MQTT password": CELLMON_PASSWORD,
        "the controller's MQTT password": CONTROLLER_PASSWORD,
        "the wrong MQTT password": WRONG_MQTT_PASSWORD,
    }
    for name, login in [("InfluxDB", INFLUX_LOGIN), ("the wrong InfluxDB", WRONG_INFLUX_LOGIN)]:
        forms[f"{name} password"] = login.split(":", 1)[1]
        forms[f"{name} login in base64"] = base64.b64encode(login.encode()).decode()
    leaked = [name for name, secret in forms.items() if secret.encode() in content]
    assert not leaked, f"{path} holds {', '.join(leaked)}"
