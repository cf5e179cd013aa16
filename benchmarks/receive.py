"""The receive path alone: CPU per message of a bare paho and a bare mqtt5 subscriber.

One Mosquitto on loopback (queue limit lifted as docs/operations.md recommends). A
persistent session per client is registered, a backlog of QoS 1 telemetry messages is
published once into both, then each subscriber drains its session in its own process:
receive, parse the JSON (as the ``make bench`` ceiling does), acknowledge.

- paho: paho-mqtt 2 (MQTT 3.1.1), automatic acknowledgement, one PUBACK per send;
- mqtt5: cellmon's ``Mqtt5Client`` (MQTT 5, Receive Maximum ``--receive-maximum``), the
  PUBACKs of each read written in one send, as ``MqttSource`` does.

CPU is the subscriber's own ``time.process_time`` from its first message to its last.

    .venv/bin/python -m benchmarks.receive --messages 100000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.pipeline import payloads, register_session
from collector.source.mqtt5_client import Mqtt5Client
from tests.harness import publish_all
from tests.servers import PLANT_BROKER_SETTINGS, Mosquitto

TOPICS = "smelter/+/+/telemetry"
REPORT = r"""
print(n, time.perf_counter() - first[1], time.process_time() - first[0])
"""

PAHO = r"""
import sys, time
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port, client_id, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
count, first = [0], []

def on_message(client, userdata, msg):
    orjson.loads(msg.payload)
    if not first:
        first.extend((time.process_time(), time.perf_counter()))
    count[0] += 1
    if count[0] >= n:
        client.disconnect()

c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_forever()
"""

MQTT5 = r"""
import select, struct, sys, time
import orjson
from collector.source.mqtt5_client import Mqtt5Client

port, client_id, n, receive_maximum = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                       int(sys.argv[4]))
count, first, mids = [0], [], []
puback = struct.Struct("!BBH").pack

def on_message(client, userdata, msg):
    orjson.loads(msg.payload)
    if not first:
        first.extend((time.process_time(), time.perf_counter()))
    count[0] += 1
    mids.append(msg.mid)

c = Mqtt5Client(client_id, receive_maximum=receive_maximum)
c.on_message = on_message
c.connect("127.0.0.1", port, 60)
while count[0] < n:
    before = count[0]
    c.loop_read()
    if mids:
        data = b"".join([puback(0x40, 2, m) for m in mids])
        mids.clear()
        sock = c.socket()
        while data:
            try:
                data = data[sock.send(data):]
            except BlockingIOError:
                select.select([], [sock], [], 1.0)
    if count[0] == before:
        c.loop(0.01)
c.disconnect()
"""


def drain(script: str, *args: object) -> tuple[int, float, float]:
    """(messages, wall seconds, CPU seconds) of one subscriber from its first message."""
    argv = [sys.executable, "-c", script + REPORT, *map(str, args)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def register_v5(port: int, client_id: str, receive_maximum: int) -> None:
    """A persistent v5 session subscribed to the telemetry (it never expires)."""
    client = Mqtt5Client(client_id, receive_maximum=receive_maximum)
    client.connect("127.0.0.1", port, 60)
    client.subscribe([(TOPICS, 1)])
    deadline = time.monotonic() + 10
    while client._subscribing and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--receive-maximum", type=int, default=500)
    args = parser.parse_args()
    n = args.messages
    with Mosquitto(Path(tempfile.mkdtemp()), extra_config=PLANT_BROKER_SETTINGS) as broker:
        register_session(broker.port, "bench-paho", (TOPICS,))
        register_v5(broker.port, "bench-mqtt5", args.receive_maximum)
        start = time.perf_counter()
        publish_all(broker.port, payloads(n, 400))
        print(f"published {n:,} QoS 1 messages in {time.perf_counter() - start:.1f} s")
        runs = {
            "paho": drain(PAHO, broker.port, "bench-paho", n),
            "mqtt5": drain(MQTT5, broker.port, "bench-mqtt5", n, args.receive_maximum),
        }
    for name, (count, wall, cpu) in runs.items():
        print(
            f"{name:6} {count:,} messages: {count / wall:,.0f} msg/s, "
            f"{cpu / count * 1e6:.2f} CPU µs/msg (receive, parse JSON, acknowledge)"
        )


if __name__ == "__main__":
    main()
