"""The paced publisher: ``rate`` cells, each once a second, for ``seconds``, QoS 1.

    python -m benchmarks.publisher PORT RATE SECONDS SEED

Potlines of 400 cells (P1, P2, ...), one message per sample on the contract's topic
``smelter/<potline>/<cell>/telemetry``. The values come from ``random.Random(SEED)``, so
every consumer is sent the same messages in the same order; each sample's ``ts`` is the
second of the schedule it belongs to, so the stream looks live to whoever reads it.

Why paho in one process and not ``mosquitto_pub -l`` (benchmarks/sustained.py): a
``mosquitto_pub -l`` publishes every line to the one topic it was started with, and here the
cell is in the topic, as the flow and the bare subscribers expect it: that would be a
process per cell. The messages are encoded before the clock starts; a 10 ms timer then
hands paho what is due by the monotonic clock (so a late tick is caught up, never lost),
with a window of 1,000 unacknowledged messages so that the broker's acknowledgements never
hold the pace back. It prints ``go`` when the schedule starts and, at the end, one JSON
object: messages sent and acknowledged, seconds, its own CPU seconds, and how far it fell
behind the schedule at worst (before it disconnects).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CELLS_PER_POTLINE = 400
TICK_S = 0.01
IN_FLIGHT = 1000


def potline_ids(rate: int) -> list[str]:
    """The potlines of a paced stream of ``rate`` cells: 400 cells each."""
    return [f"P{k + 1}" for k in range(-(-rate // CELLS_PER_POTLINE))]


def messages(rate: int, seconds: int, seed: int, t0_ms: int) -> list[tuple[str, bytes]]:
    """Every message of the stream, in publishing order: second by second, cell by cell."""
    rng = random.Random(seed)
    topics = [
        f"smelter/P{c // CELLS_PER_POTLINE + 1}/C{c % CELLS_PER_POTLINE:03d}/telemetry"
        for c in range(rate)
    ]
    out = []
    for step in range(seconds):
        for topic in topics:
            doc = {
                "ts": t0_ms + step * 1000,
                "cell_voltage_v": round(4.1 + rng.random() / 10, 4),
                "line_current_ka": round(300.0 + rng.random(), 2),
                "bath_temp_c": round(955.0 + rng.random() * 5, 2),
                "noise_uohm": round(7.5 + rng.random(), 3),
            }
            out.append((topic, orjson.dumps(doc)))
    return out


def publish(port: int, rate: int, seconds: int, seed: int) -> None:
    t0_ms = (time.time_ns() // 1_000_000_000 + 1) * 1000
    stream = messages(rate, seconds, seed, t0_ms)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paced-{os.getpid()}")
    client.max_inflight_messages_set(IN_FLIGHT)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    print("go", flush=True)
    start = time.monotonic()
    infos, sent, behind = [], 0, 0.0
    tick = start
    while sent < len(stream):
        due = min(len(stream), int((time.monotonic() - start) * rate) + 1)
        behind = max(behind, (due - sent) / rate)
        for topic, payload in stream[sent:due]:
            infos.append(client.publish(topic, payload, qos=1))
        sent = due
        tick += TICK_S
        time.sleep(max(0.0, tick - time.monotonic()))
    elapsed = time.monotonic() - start
    for info in infos:
        info.wait_for_publish(60)
    cpu = os.times()
    # Reported before paho's network thread is stopped: that takes up to a second (its
    # select timeout), which the consumer's figures must not include.
    print(
        json.dumps(
            {
                "sent": sent,
                "acknowledged": sum(info.is_published() for info in infos),
                "seconds": elapsed,
                "cpu_s": cpu.user + cpu.system,
                "max_behind_s": behind,
            }
        ),
        flush=True,
    )
    client.disconnect()
    client.loop_stop()


def main() -> None:
    port, rate, seconds, seed = (int(a) for a in sys.argv[1:5])
    publish(port, rate, seconds, seed)


if __name__ == "__main__":
    main()
