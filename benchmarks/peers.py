"""cellmon against Node-RED on the same flow, and both against two bare subscribers.

    make bench-peers          # = python -m benchmarks.peers --mode all
    python -m benchmarks.peers --mode all --samples 20000 --rates 400,2000 --seconds 10

Five consumers (benchmarks/consumers.py): Node-RED 4.1, ``cellmon run`` with the paho
client and with the compiled mqtt5 client (each skipped, with a line in the report, when
this cellmon refuses its config), a bare paho subscriber and a bare subscriber on the
compiled mqtt5 codec (the ceilings). One Mosquitto (default in-flight window, queue limit
lifted as docs/operations.md recommends) per broker run and one InfluxDB 1.x on loopback;
each consumer writes into its own database.

- drained: persistent sessions are registered, a backlog of QoS 1 messages is published
  once, and the consumers drain it one after the other;
- paced (benchmarks/paced.py): for each of ``--rates`` (400 msg/s: a 400-cell potline,
  each cell once a second; 2,000: five potlines), each consumer alone against its own
  broker while the paced publisher (benchmarks/publisher.py) sends ``--seconds`` of it.

The table goes to stdout, the figures to var/bench-peers/result.json, and with
``--write-docs`` the plot to docs/benchmarks-peers.svg. Node-RED is installed with npm into
var/bench-peers/<versions>/ on first use and reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.consumers import Consumer, Target, consumers, register
from benchmarks.nodered import install_node_red
from benchmarks.paced import Result, measure, run_paced
from benchmarks.peers_report import report
from benchmarks.pipeline import influx_count, payloads
from benchmarks.subscribers import RECEIVE_MAXIMUM
from tests.harness import publish_all
from tests.servers import PLANT_BROKER_SETTINGS, InfluxV1, Mosquitto


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("drained", "paced", "all"), default="all")
    parser.add_argument("--samples", type=int, default=200_000, help="drained: the backlog")
    parser.add_argument("--cells", type=int, default=400, help="drained: cells of the backlog")
    parser.add_argument("--shards", type=int, default=0, help="cellmon run --shards N (0: one)")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[400, 2000],
        help="paced: messages per second, comma separated (400 cells a potline)",
    )
    parser.add_argument("--seconds", type=int, default=30, help="paced: of each run")
    parser.add_argument("--seed", type=int, default=20, help="paced: of the message values")
    parser.add_argument(
        "--receive-maximum",
        type=int,
        default=RECEIVE_MAXIMUM,
        help="MQTT 5 Receive Maximum of cellmon-mqtt5 and bare-mqtt5 (paho: the broker's 20)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="also write docs/benchmarks-peers.svg"
    )
    return parser.parse_args()


def run_drained(
    work: Path, influx: InfluxV1, chosen: list[Consumer], args: argparse.Namespace
) -> tuple[list[Result], dict[str, str], float]:
    """Publish the backlog once, let each consumer drain it in turn; checks its points."""
    results, problems = [], {}
    here = work / "drained"
    with Mosquitto(here / "mosquitto", extra_config=PLANT_BROKER_SETTINGS) as broker:
        target = Target(here, broker.port, influx, args.samples, "drained", args.cells, args.shards)
        for consumer in chosen:
            register(consumer, target)
        messages = payloads(args.samples, args.cells)
        t = time.perf_counter()
        publish_all(broker.port, messages)
        publish_s = time.perf_counter() - t
        sample = messages[len(messages) // 2 + 7]
        del messages
        for consumer in chosen:
            print(f"drained: {consumer.name} ...", flush=True)
            results.append(measure(consumer, target))
            if consumer.writes and (
                problem := check_points(influx, target.db(consumer.name), args.samples, sample)
            ):
                problems[consumer.name] = problem
    return results, problems, publish_s


def check_points(influx: InfluxV1, db: str, n: int, sample: tuple[str, bytes]) -> str | None:
    """None if the database holds exactly n cell points, one of them the published sample."""
    count = influx_count(influx, db)
    if count != n:
        return f"{db}: {count} points, expected {n}"
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
        return f"{db}: point of {topic} at {doc['ts']} ms is {got}, expected {want}"
    return None


def main() -> None:
    args = arguments()
    install_node_red()  # before any server starts: a first run downloads
    work = Path(tempfile.mkdtemp(prefix="cellmon-bench-peers-"))
    results: list[Result] = []
    context: dict[str, object] = {}
    with InfluxV1(work / "influxd") as influx:
        chosen, notes = consumers(influx, args.receive_maximum)
        for name, note in notes.items():
            print(f"{name}: {note}", flush=True)
        if args.mode in ("drained", "all"):
            drained, problems, publish_s = run_drained(work, influx, chosen, args)
            results += drained
            context.update(drained_publish_s=publish_s, drained_problems=problems)
        if args.mode in ("paced", "all"):
            results += run_paced(work, influx, chosen, args)
    report(args, results, notes, context)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
