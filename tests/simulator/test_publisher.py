import argparse
import json
import math
import threading
import time
from collections import Counter
from uuid import uuid4

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator import cli
from simulator.payloads import PotlineSim
from simulator.publisher import PublishOptions, publish

pytestmark = pytest.mark.integration

T0 = 1_230_768_000_000_000_000  # 2009-01-01T00:00:00Z in ns
S = 1_000_000_000
DAY = 86400 * S
RECEIVE_TIMEOUT_S = 30.0


class Subscriber:
    """Collects every message under a topic prefix, in arrival order, until the sentinel.

    The sentinel is published only after the simulator's publishes were all acknowledged,
    so the broker has queued every one of them to us before it: once it arrives, nothing
    of the run is still on its way.
    """

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.sentinel = f"{prefix}/done"
        self.messages: list[tuple[str, bytes]] = []
        self._done = threading.Event()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid4().hex[:8]}"
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(host, port)
        self._client.loop_start()
        self._client.subscribe(f"{prefix}/#", qos=1)
        assert self._subscribed.wait(RECEIVE_TIMEOUT_S), "no SUBACK"

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.sentinel:
            self._done.set()
        else:
            self.messages.append((message.topic, message.payload))

    def finish(self) -> list[tuple[str, bytes]]:
        self._client.publish(self.sentinel, b"{}", qos=1)
        assert self._done.wait(RECEIVE_TIMEOUT_S), "sentinel never arrived"
        self._client.disconnect()
        self._client.loop_stop()
        return self.messages


def classify(obj: dict) -> str:
    """What the pipeline would make of one telemetry object."""
    if "cell_voltage_v" not in obj or "line_current_ka" not in obj:
        return "missing_key"
    if not math.isfinite(obj["cell_voltage_v"]):
        return "non_finite"
    if not 0 <= obj["cell_voltage_v"] <= 100:
        return "out_of_range"
    return "good"


def options(mosquitto, prefix: str, **kw) -> PublishOptions:
    return PublishOptions(
        host=mosquitto.host,
        port=mosquitto.port,
        telemetry_topic=prefix + "/{potline}/{cell}/telemetry",
        event_topic=prefix + "/{potline}/{cell}/event",
        **kw,
    )


def expected_telemetry(s: PotlineSim, prefix: str, t0: int, t1: int) -> dict:
    return {
        (f"{prefix}/P1/{cell}/telemetry", o["ts"]): o
        for step in s.telemetry(t0, t1)
        for cell, o in zip(s.cell_ids, step.payloads, strict=True)
    }


def window_with_events(s: PotlineSim, seconds: int) -> tuple[int, int]:
    """A window of `seconds` that starts 10 s before the first event of the day."""
    first = s.events(T0, T0 + DAY)[0].ts_ns
    t0 = s.step_ns(s.steps(first - 10 * S, first).start)
    return t0, t0 + seconds * S


def test_single_objects_arrive_one_per_sample(mosquitto) -> None:
    prefix = f"t{uuid4().hex[:8]}"
    s = PotlineSim("P1", 3, seed=2, start_ns=T0, interval_s=1.0)
    t0, t1 = window_with_events(s, 20)
    subscriber = Subscriber(mosquitto.host, mosquitto.port, prefix)

    counts = publish(s, t0, t1, options(mosquitto, prefix))

    received = subscriber.finish()
    assert counts.samples == 3 * 20
    assert counts.events >= 1
    assert counts.messages == counts.samples + counts.events == len(received)
    telemetry = [(t, json.loads(p)) for t, p in received if t.endswith("/telemetry")]
    assert all(isinstance(o, dict) for _, o in telemetry)
    assert {(t, o["ts"]): o for t, o in telemetry} == expected_telemetry(s, prefix, t0, t1)
    events = [json.loads(p) for t, p in received if t.endswith("/event")]
    assert events == [e.payload for e in s.events(t0, t1)]


def test_arrays_with_malformed_and_duplicate_messages(mosquitto) -> None:
    prefix = f"t{uuid4().hex[:8]}"
    cells, seconds, k = 4, 60, 3
    s = PotlineSim("P1", cells, seed=5, start_ns=T0, interval_s=1.0)
    t0, t1 = window_with_events(s, seconds)
    subscriber = Subscriber(mosquitto.host, mosquitto.port, prefix)

    counts = publish(
        s,
        t0,
        t1,
        options(mosquitto, prefix, array_size=k, bad_fraction=0.3, dup_fraction=0.3, seed=9),
    )

    received = subscriber.finish()
    telemetry = [(t, p) for t, p in received if t.endswith("/telemetry")]
    events = [json.loads(p) for t, p in received if t.endswith("/event")]
    # 60 samples per cell in arrays of 3: 20 arrays per cell, some sent twice
    assert counts.messages == len(received) == len(telemetry) + len(events)
    assert len(telemetry) == cells * seconds // k + counts.duplicates // k
    assert events == [e.payload for e in s.events(t0, t1)]
    assert counts.events == len(events)

    seen: Counter[str] = Counter()
    good = []
    for topic, payload in telemetry:
        try:
            objects = json.loads(payload)  # the stdlib reads NaN, as the pipeline does
        except json.JSONDecodeError:
            seen["bad_json"] += 1
            continue
        assert isinstance(objects, list)
        assert len(objects) == k
        kinds = Counter(classify(o) for o in objects)
        seen.update({kind: n for kind, n in kinds.items() if kind != "good"})
        assert kinds["good"] >= k - 1  # one spoiled object per malformed message
        good += [(topic, o["ts"], o) for o in objects if classify(o) == "good"]
    assert seen == counts.malformed
    assert sum(seen.values()) > 0
    assert len(good) == counts.samples + counts.duplicates
    assert counts.duplicates > 0
    unique = {(topic, ts): o for topic, ts, o in good}
    assert len(unique) == counts.samples
    expected = expected_telemetry(s, prefix, t0, t1)
    assert all(unique[key] == expected[key] for key in unique)


def simulate_args(mosquitto, prefix: str, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(
        [
            *("--host", mosquitto.host, "--port", str(mosquitto.port)),
            *("--cells", "3", "--steps", "5", "--speed", "0"),
            *("--telemetry-topic", prefix + "/{potline}/{cell}/telemetry"),
            *("--event-topic", prefix + "/{potline}/{cell}/event"),
            *extra,
        ]
    )


def test_cli_publishes_and_summarises(mosquitto, capsys) -> None:
    prefix = f"t{uuid4().hex[:8]}"
    args = simulate_args(mosquitto, prefix, "--start", "2009-01-01T08:00:00+08:00")
    subscriber = Subscriber(mosquitto.host, mosquitto.port, prefix)

    assert cli.run(args) == 0

    received = subscriber.finish()
    assert "15 samples" in capsys.readouterr().out
    telemetry = [(t, json.loads(p)) for t, p in received if t.endswith("/telemetry")]
    # 2009-01-01T08:00:00+08:00 is 1230768000 s after the epoch
    assert sorted((t, o["ts"]) for t, o in telemetry) == [
        (f"{prefix}/P1/C00{c}/telemetry", 1_230_768_000_000 + 1000 * k)
        for c in (1, 2, 3)
        for k in range(5)
    ]


def test_cli_fast_run_from_now_sends_no_sample_from_the_future(mosquitto) -> None:
    prefix = f"t{uuid4().hex[:8]}"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, prefix)

    assert cli.run(simulate_args(mosquitto, prefix, "--interval-s", "60")) == 0

    received = subscriber.finish()
    now_ms = time.time_ns() // 1_000_000
    stamps = [json.loads(p)["ts"] for t, p in received if t.endswith("/telemetry")]
    # five minutes of samples ending a minute before the run began
    assert len(stamps) == 15
    assert max(stamps) <= now_ms
    assert min(stamps) >= now_ms - 3_600_000
