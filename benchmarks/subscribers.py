"""The two bare subscribers, the ceilings: receive, parse the JSON, acknowledge; nothing else.

Each runs as ``python -c SCRIPT port client_id n topics`` and speaks a line protocol on its
stdout: ``ready`` once subscribed, the count every 10,000 messages, then ``done count
seconds startup_cpu`` at the n-th message (seconds from its first to its n-th message;
startup_cpu its own user + system time at the first message), after which it waits for its
stdin to close, so that the harness can read its CPU time and peak memory from /proc while
it still exists. SIGTERM makes it print ``done`` with what it has and exit.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from tests.harness import ROOT, wait_for

# An MQTT 3.1.1 client gets the broker's in-flight window (Mosquitto's max_inflight_messages,
# 20); an MQTT 5 client announces its own (Receive Maximum). The bare compiled subscriber
# asks for what cellmon's mqtt5 client asks for by default (mqtt.receive_maximum), so that
# it is the ceiling of that client (``--receive-maximum`` changes both).
RECEIVE_MAXIMUM = 500
SESSION_EXPIRY_S = 3600

PAHO = r"""
import os, signal, sys, time
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port, client_id, n, topics = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = {"count": 0, "first": 0.0, "last": 0.0, "startup": 0.0}

def report():
    seconds = seen["last"] - seen["first"]
    print("done", seen["count"], seconds, seen["startup"], flush=True)

def on_message(client, userdata, msg):
    orjson.loads(msg.payload)
    if seen["count"] == 0:
        seen["first"] = time.perf_counter()
        t = os.times()
        seen["startup"] = t.user + t.system
    seen["count"] += 1
    if seen["count"] % 10000 == 0:
        print(seen["count"], flush=True)
    if seen["count"] >= n:
        seen["last"] = time.perf_counter()
        client.disconnect()

def on_connect(client, userdata, flags, reason, properties):
    client.subscribe(topics, 1)

signal.signal(signal.SIGTERM, lambda *_: (report(), os._exit(1)))
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
c.on_message = on_message
c.on_connect = on_connect
c.on_subscribe = lambda *_: print("ready", flush=True)
c.connect("127.0.0.1", port)
c.loop_forever()
report()
sys.stdin.read()
"""

# A blocking-socket loop on the mqtt5 sans-I/O codec (Rust): read 256 KiB at a time,
# decode every packet in it, send the PUBACKs of one read in one write. n = 0 registers the
# session (connect, subscribe, disconnect) and exits.
MQTT5 = r"""
import os, signal, socket, sys, time
import orjson
import mqtt5

port, client_id, n, topics = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
window, expiry = int(sys.argv[5]), int(sys.argv[6])
seen = {"count": 0, "first": 0.0, "last": 0.0, "startup": 0.0}

def report():
    seconds = seen["last"] - seen["first"]
    print("done", seen["count"], seconds, seen["startup"], flush=True)

signal.signal(signal.SIGTERM, lambda *_: (report(), os._exit(1)))
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
connect = mqtt5.ConnectPacket(
    client_id, clean_start=False, session_expiry_interval=expiry, receive_max=window
)
sock.sendall(connect.write())
subscribe = mqtt5.SubscribePacket(
    1, [mqtt5.TopicFilter(topics, max_qos=mqtt5.QoS.AT_LEAST_ONCE)]
).write()
Publish, PubAck, read = mqtt5.PublishPacket, mqtt5.PubAckPacket, mqtt5.read
pending = b""
while seen["count"] < n or n == 0:
    data = sock.recv(262144)
    if not data:
        sys.exit("the broker closed the connection")
    view = memoryview(pending + data if pending else data)
    pos, acks = 0, []
    while True:
        try:
            packet, size = read(view[pos:])
        except IndexError:  # the rest of a packet is in the next read
            break
        pos += size
        if isinstance(packet, Publish):
            orjson.loads(packet.payload)
            if seen["count"] == 0:
                seen["first"] = time.perf_counter()
                t = os.times()
                seen["startup"] = t.user + t.system
            seen["count"] += 1
            if seen["count"] % 10000 == 0:
                print(seen["count"], flush=True)
            if packet.packet_id is not None:
                acks.append(PubAck(packet.packet_id).write())
        elif isinstance(packet, mqtt5.ConnAckPacket):
            sock.sendall(subscribe)
        elif isinstance(packet, mqtt5.SubAckPacket):
            if n == 0:
                sock.sendall(mqtt5.DisconnectPacket().write())
                sys.exit(0)
            print("ready", flush=True)
    pending = bytes(view[pos:])
    if acks:
        sock.sendall(b"".join(acks))
seen["last"] = time.perf_counter()
report()
sys.stdin.read()
"""


def mqtt5_available() -> str | None:
    """None when the mqtt5 codec imports, else why not (the compiled subscriber is skipped)."""
    try:
        import mqtt5  # noqa: F401
    except ImportError as err:
        return f"mqtt5 not installed ({err}): pip install 'mqtt5>=0.8'"
    return None


class BareSubscriber:
    """One bare subscriber process of a benchmark run, read through its line protocol."""

    def __init__(self, script: str, client_id: str, window: int = RECEIVE_MAXIMUM) -> None:
        self.script = script
        self.client_id = client_id
        self.window = window
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def argv(self, port: int, n: int, topics: str) -> list[str]:
        extra = [str(self.window), str(SESSION_EXPIRY_S)] if self.script is MQTT5 else []
        script = [sys.executable, "-c", self.script]
        return [*script, str(port), self.client_id, str(n), topics, *extra]

    def start(self, port: int, n: int, topics: str, log: Path) -> None:
        with open(log, "w") as stderr:
            self.proc = subprocess.Popen(
                self.argv(port, n, topics),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: "ready" in self.lines, 60, lambda: log.read_text()[-2000:])

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def done(self) -> tuple[int, float, float] | None:
        """(count, seconds from the first to the last message, CPU s at the first)."""
        last = self.lines[-1] if self.lines else ""
        if not last.startswith("done"):
            return None
        _, count, seconds, startup = last.split()
        return int(count), float(seconds), float(startup)

    def arrived(self) -> int:
        if (done := self.done()) is not None:
            return done[0]
        counts = [int(line) for line in self.lines if line.isdigit()]
        return counts[-1] if counts else 0

    def stop(self) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        if self.done() is None:
            self.proc.terminate()
        self.proc.stdin.close()
        self.proc.wait(60)


def register_mqtt5_session(port: int, client_id: str, topics: str, window: int) -> None:
    """The compiled subscriber's persistent session, so the broker queues the backlog."""
    argv = BareSubscriber(MQTT5, client_id, window).argv(port, 0, topics)
    subprocess.run(argv, cwd=ROOT, check=True, timeout=60)
