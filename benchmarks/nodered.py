"""Node-RED 4.1 on the benchmark's flow: installed by npm on first use, started headless.

``mqtt in`` → ``json`` → ``function`` (the raw ``cell`` point) → ``join`` (5,000 messages
or 1 s) → ``influxdb batch`` (node-red-contrib-influxdb, 1.x). Installed into
var/bench-peers/<versions>/ on first use and reused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.pipeline import TOPICS
from tests.harness import ROOT, wait_for
from tests.servers import InfluxV1, free_port

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
    return config_nodes(mqtt_port, influx_port, db) + flow_nodes()


def config_nodes(mqtt_port: int, influx_port: int, db: str) -> list[dict[str, object]]:
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
    ]


def flow_nodes() -> list[dict[str, object]]:
    return parse_nodes() + batch_nodes()


def parse_nodes() -> list[dict[str, object]]:
    return [
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
    ]


def batch_nodes() -> list[dict[str, object]]:
    return [
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


def start_node_red(
    work: Path, port: int, influx: InfluxV1, db: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """Node-RED on the flow into ``db``, once its log says it is connected to the broker."""
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
    except BaseException:
        proc.kill()
        proc.wait(60)
        raise
    return proc, log_path


def node() -> str:
    path = shutil.which("node")
    if path is None:
        msg = "node not found: install Node.js 18 or later (Node-RED 4 needs it)"
        raise SystemExit(msg)
    return path


def version() -> str:
    return subprocess.run(
        [node(), "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
