"""cellmon against Node-RED on the same flow, and both against the bare paho ceiling.

One Mosquitto (default in-flight window, queue limit lifted as docs/operations.md
recommends) and one InfluxDB 1.x on loopback. Three persistent sessions are registered,
then a backlog of QoS 1 telemetry messages is published once; the consumers drain it one
after the other, each through its own session and into its own database:

- ceiling: a bare paho subscriber that receives and parses each message (auto ack);
- node-red: ``mqtt in`` → ``json`` → ``function`` (the raw ``cell`` point) → ``join``
  (5,000 messages or 1 s) → ``influxdb batch`` (node-red-contrib-influxdb, 1.x);
- cellmon: ``cellmon run`` with the shipped rules.

Node-RED is installed with npm into var/bench-peers/<versions>/ on first use and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.pipeline import (
    CEILING_ID,
    TOPICS,
    Drain,
    backlog_arguments,
    cellmon_sessions,
    cpu_seconds,
    influx_count,
    payloads,
    peak_rss_kib,
    register_session,
    run_ceiling,
    run_pipeline,
)
from tests.harness import ROOT, publish_all, wait_for
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto, free_port

NODE_RED = "4.1.8"
INFLUXDB_NODE = "0.7.0"  # node-red-contrib-influxdb
INSTALL = ROOT / "var" / "bench-peers" / f"node-red-{NODE_RED}_influxdb-{INFLUXDB_NODE}"
NODE_RED_ID = "bench-node-red"
JOIN_COUNT = 5000
JOIN_TIMEOUT_S = 1

# The raw point cellmon writes for a telemetry sample: measurement cell, tags potline and
# cell from the topic, the sample's fields, its timestamp (ms; the batch node says so).
FUNCTION = """\
const level = msg.topic.split("/");
const s = msg.payload;
msg.payload = {
    measurement: "cell",
    tags: {potline: level[1], cell: level[2]},
    fields: {
        voltage_v: s.cell_voltage_v,
        current_ka: s.line_current_ka,
        bath_temp_c: s.bath_temp_c,
        noise_uohm: s.noise_uohm,
    },
    timestamp: s.ts,
};
return msg;
"""


def install_node_red() -> Path:
    """The directory holding node_modules/node-red, installed with npm unless cached."""
    if (INSTALL / "node_modules" / "node-red" / "package.json").exists() and (
        INSTALL / "node_modules" / "node-red-contrib-influxdb" / "package.json"
    ).exists():
        return INSTALL
    npm = shutil.which("npm")
    if npm is None:
        msg = "npm not found: install Node.js 18 or later (Node-RED 4 needs it)"
        raise SystemExit(msg)
    INSTALL.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="install-", dir=INSTALL.parent))
    print(f"installing node-red@{NODE_RED} and node-red-contrib-influxdb@{INFLUXDB_NODE} ...")
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(staging),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"node-red@{NODE_RED}",
            f"node-red-contrib-influxdb@{INFLUXDB_NODE}",
        ],
        check=True,
    )
    shutil.rmtree(INSTALL, ignore_errors=True)
    staging.rename(INSTALL)  # whole or not at all: an interrupted install is not reused
    return INSTALL


# Node-RED takes a config node's property that equals a node id for a reference to it.
ID = {
    "tab": "b0b0000000000001",
    "broker": "b0b0000000000002",
    "influx": "b0b0000000000003",
    "in": "b0b0000000000004",
    "json": "b0b0000000000005",
    "point": "b0b0000000000006",
    "join": "b0b0000000000007",
    "write": "b0b0000000000008",
}


def flows(mqtt_port: int, influx_port: int, db: str) -> list[dict[str, object]]:
    """The flow: mqtt in → json → function → join → influxdb batch, and its two configs."""
    return [
        {"id": ID["tab"], "type": "tab", "label": "bench"},
        {
            "id": ID["broker"],
            "type": "mqtt-broker",
            "name": "mosquitto",
            "broker": "127.0.0.1",
            "port": str(mqtt_port),
            "clientid": NODE_RED_ID,
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": False,  # the persistent session the backlog is queued for
            "autoUnsubscribe": False,
            "birthTopic": "",
            "closeTopic": "",
            "willTopic": "",
        },
        {
            "id": ID["influx"],
            "type": "influxdb",
            "hostname": "127.0.0.1",
            "port": str(influx_port),
            "protocol": "http",
            "database": db,
            "name": "influx",
            "usetls": False,
            "tls": "",
            "influxdbVersion": "1.x",
        },
        {
            "id": ID["in"],
            "type": "mqtt in",
            "z": ID["tab"],
            "name": "telemetry",
            "topic": TOPICS,
            "qos": "1",
            "datatype": "utf8",
            "broker": ID["broker"],
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "wires": [[ID["json"]]],
        },
        {
            "id": ID["json"],
            "type": "json",
            "z": ID["tab"],
            "property": "payload",
            "action": "obj",
            "pretty": False,
            "wires": [[ID["point"]]],
        },
        {
            "id": ID["point"],
            "type": "function",
            "z": ID["tab"],
            "name": "raw point",
            "func": FUNCTION,
            "outputs": 1,
            "timeout": 0,
            "noerr": 0,
            "wires": [[ID["join"]]],
        },
        {
            "id": ID["join"],
            "type": "join",
            "z": ID["tab"],
            "mode": "custom",
            "build": "array",
            "property": "payload",
            "propertyType": "msg",
            "key": "topic",
            "joiner": "\\n",
            "joinerType": "str",
            "accumulate": False,
            "timeout": str(JOIN_TIMEOUT_S),
            "count": str(JOIN_COUNT),
            "reduceRight": False,
            "wires": [[ID["write"]]],
        },
        {
            "id": ID["write"],
            "type": "influxdb batch",
            "z": ID["tab"],
            "influxdb": ID["influx"],
            "precision": "ms",
            "retentionPolicy": "",
            "name": "write",
            "wires": [],
        },
    ]


SETTINGS = """\
module.exports = {{
    uiHost: "127.0.0.1",
    uiPort: {ui_port},
    httpAdminRoot: false,   // no editor, no admin API
    httpNodeRoot: false,
    flowFile: "flows.json",
    credentialSecret: false,
    externalModules: {{ autoInstall: false }},
    telemetry: {{ enabled: false }},
    diagnostics: {{ enabled: false }},
    logging: {{ console: {{ level: "info", metrics: false, audit: false }} }},
}};
"""


def run_node_red(work: Path, port: int, influx: InfluxV1, db: str, n: int) -> Drain:
    """Node-RED's drain: rate from its MQTT connection to the n-th point in InfluxDB."""
    install = install_node_red()
    work.mkdir(parents=True)
    (work / "flows.json").write_text(json.dumps(flows(port, influx.port, db), indent=1))
    # The InfluxDB config node reads its (empty) user name and password from here.
    (work / "flows_cred.json").write_text(json.dumps({ID["influx"]: {}}))
    (work / "settings.js").write_text(SETTINGS.format(ui_port=free_port()))
    log_path = work / "node-red.log"
    red = install / "node_modules" / "node-red" / "red.js"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [node(), str(red), "--userDir", str(work), "--settings", str(work / "settings.js")],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: "Connected to broker" in log_path.read_text(),
            120,
            lambda: log_path.read_text()[-3000:],
        )
        start = time.perf_counter()
        startup_cpu = cpu_seconds(proc.pid)
        wait_for_points(influx, db, n, lambda: log_path.read_text()[-3000:])
        seconds = time.perf_counter() - start
        cpu = cpu_seconds(proc.pid)
        rss = peak_rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    return Drain(n / seconds, rss, cpu, startup_cpu)


def wait_for_points(
    influx: InfluxV1, db: str, n: int, describe: Callable[[], str], stall_s: float = 60
) -> None:
    """Poll until the database holds n points; fail if the count stops growing."""
    last, since = -1, time.monotonic()
    while (count := influx_count(influx, db)) < n:
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > stall_s:
            msg = f"{db}: stuck at {count} of {n} points for {stall_s} s: {describe()}"
            raise SystemExit(msg)
        time.sleep(0.2)


def check_points(influx: InfluxV1, db: str, n: int, sample: tuple[str, bytes]) -> None:
    """The database holds exactly n cell points, and one of them is the published sample."""
    count = influx_count(influx, db)
    if count != n:
        msg = f"{db}: {count} points, expected {n}"
        raise SystemExit(msg)
    topic, payload = sample
    doc = json.loads(payload)
    _, potline, cell, _ = topic.split("/")
    rows = influx.query(
        "SELECT voltage_v, current_ka, bath_temp_c, noise_uohm FROM cell "
        f"WHERE potline = '{potline}' AND cell = '{cell}' AND time = {doc['ts']}ms",
        db,
    )
    want = {
        "voltage_v": doc["cell_voltage_v"],
        "current_ka": doc["line_current_ka"],
        "bath_temp_c": doc["bath_temp_c"],
        "noise_uohm": doc["noise_uohm"],
    }
    got = {k: rows[0][k] for k in want} if len(rows) == 1 else rows
    if got != want:
        msg = f"{db}: point of {topic} at {doc['ts']} ms is {got}, expected {want}"
        raise SystemExit(msg)


def node() -> str:
    path = shutil.which("node")
    if path is None:
        msg = "node not found: install Node.js 18 or later (Node-RED 4 needs it)"
        raise SystemExit(msg)
    return path


def main() -> None:
    """Publish the backlog once, let each consumer drain it in turn, and report."""
    args = backlog_arguments(__doc__, 200_000)
    install_node_red()  # before any server starts: a first run downloads
    work = Path(tempfile.mkdtemp(prefix="cellmon-bench-peers-"))
    broker = Mosquitto(work / "mosquitto", extra_config=PLANT_BROKER_SETTINGS)
    influx = InfluxV1(work / "influxd")
    with broker, influx:
        for db in ("node_red", "cellmon"):
            influx.create_database(db)
        for client_id in (CEILING_ID, NODE_RED_ID):
            register_session(broker.port, client_id)
        for client_id, filters in cellmon_sessions(args.cells, args.shards).items():
            register_session(broker.port, client_id, filters)
        messages = payloads(args.samples, args.cells)
        t = time.perf_counter()
        publish_all(broker.port, messages)
        publish_s = time.perf_counter() - t
        sample = messages[len(messages) // 2 + 7]
        del messages
        ceiling = run_ceiling(broker.port, args.samples)
        red = run_node_red(work / "node-red", broker.port, influx, "node_red", args.samples)
        check_points(influx, "node_red", args.samples, sample)
        cellmon = run_pipeline(
            work / "cellmon",
            broker.port,
            influx,
            "cellmon",
            args.samples,
            cells=args.cells,
            shards=args.shards,
        )
        check_points(influx, "cellmon", args.samples, sample)
    report(args, publish_s, {"ceiling": ceiling, "node-red": red, "cellmon": cellmon})
    shutil.rmtree(work, ignore_errors=True)


def versions() -> str:
    node_version = subprocess.run(
        [node(), "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Node.js {node_version}, Node-RED {NODE_RED}, "
        f"node-red-contrib-influxdb {INFLUXDB_NODE}, {sys.platform}"
    )


def report(args: argparse.Namespace, publish_s: float, drains: dict[str, Drain]) -> None:
    n = args.samples
    print(f"machine: {versions()}")
    print(
        f"backlog: {n} samples, one per QoS 1 message, {args.cells} cells "
        f"(published in {publish_s:.1f} s)"
    )
    print(
        f"{'consumer':<10} {'points/s':>10} {'CPU s':>8} {'startup':>8} "
        f"{'CPU µs/msg':>11} {'peak RSS':>9}"
    )
    per_msg = {}
    for name, d in drains.items():
        per_msg[name] = (d.cpu_s - d.startup_cpu_s) / n * 1e6
        print(
            f"{name:<10} {d.rate:>10,.0f} {d.cpu_s:>8.2f} {d.startup_cpu_s:>8.2f} "
            f"{per_msg[name]:>11.1f} {d.rss_kib / 1024:>5.0f} MiB"
        )
    c, r, b = drains["cellmon"], drains["node-red"], drains["ceiling"]
    print(
        f"cellmon / node-red: points/s {c.rate / r.rate:.2f}, "
        f"CPU per message {per_msg['cellmon'] / per_msg['node-red']:.2f}"
    )
    print(
        f"cellmon / ceiling:  points/s {c.rate / b.rate:.2f}, "
        f"CPU per message {per_msg['cellmon'] / per_msg['ceiling']:.2f}"
    )
    print("(CPU s: whole process up to the end of its drain, startup included; µs/msg without)")


if __name__ == "__main__":
    main()
