"""The demo's simulated potline, published to the embedded broker in slices of wall time.

A slice of about a second lets the publisher stop promptly and switch to real time once the
simulation has caught up with the clock (the pipeline rejects samples from the future).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field, replace

from simulator.parameters import NS_PER_S
from simulator.payloads import PotlineSim
from simulator.publisher import PublishCounts, PublishOptions, publish
from simulator.sparkplug import Line, LineOptions
from simulator.sparkplug_node import NodeOptions

log = logging.getLogger(__name__)

SLICE_WALL_S = 1.0


@dataclass
class Feed:
    """Publishes the simulation in slices of about a second of wall time until stopped.

    Slices let the publisher stop within a second and switch to real time once the
    simulation has caught up with the clock (the pipeline rejects samples from the future).
    """

    sim: PotlineSim
    options: PublishOptions
    speed: float
    stop: threading.Event
    counts: PublishCounts = field(default_factory=PublishCounts)
    simulated_s: float = 0.0
    error: OSError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Publish in a thread of its own until the stop is set."""
        threading.Thread(target=self._run, name="demo-simulator", daemon=True).start()

    def fail(self, error: OSError) -> None:
        """End before starting: nothing is published."""
        log.error("simulator not started: %s", error)
        self.error = error
        self.done.set()

    def _run(self) -> None:
        try:
            self._publish_until_stopped()
        except OSError as exc:  # broker refused, stalled or went away
            log.error("simulator stopped: %s", exc)
            self.error = exc
        finally:
            self.done.set()

    def _publish_until_stopped(self) -> None:
        t = self.sim.start_ns
        for index in itertools.count():
            speed = self.speed if t + self._span_ns(self.speed) <= time.time_ns() else 1.0
            if speed == 1.0 and self.stop.wait(max(0, t - time.time_ns()) / NS_PER_S):
                return
            if self.stop.is_set():
                return
            end = t + self._span_ns(speed)
            self._slice(t, end, speed, index)
            self.simulated_s = (end - self.sim.start_ns) / NS_PER_S
            t = end

    def _slice(self, t0_ns: int, t1_ns: int, speed: float, index: int) -> None:
        # Each slice spoils other messages, reproducibly for a given --seed, and has its
        # own client id: amqtt clears the queue of a session whose id connects again.
        options = replace(
            self.options,
            speed=speed,
            seed=self.options.seed * 2**32 + index,
            client_id=f"{self.options.client_id}-{index}",
        )
        self._add(publish(self.sim, t0_ns, t1_ns, options))

    @staticmethod
    def _span_ns(speed: float) -> int:
        return round(SLICE_WALL_S * speed * NS_PER_S)

    def _add(self, part: PublishCounts) -> None:
        c = self.counts
        c.samples += part.samples
        c.events += part.events
        c.messages += part.messages
        c.duplicates += part.duplicates
        c.malformed.update(part.malformed)


@dataclass
class SparkplugFeed(Feed):
    """The same potline from Sparkplug B edge nodes that stay connected for the whole demo.

    One session per node (births once, data by alias, NDEATH at the end), as a plant's
    gateways behave; ``options`` only gives the broker's port.
    """

    line: LineOptions = field(default_factory=LineOptions)
    _line: Line = field(init=False, repr=False)

    def _publish_until_stopped(self) -> None:
        node = NodeOptions(port=self.options.port, qos=1, client_prefix="cellmon-demo")
        with Line(self.sim, node, self.line, self.sim.start_ns) as self._line:
            super()._publish_until_stopped()

    def _slice(self, t0_ns: int, t1_ns: int, speed: float, index: int) -> None:
        before = self._line.counts.samples, self._line.counts.events, self._line.counts.messages
        self._line.stream(t0_ns, t1_ns, speed)
        c, now = self.counts, self._line.counts
        c.samples += now.samples - before[0]
        c.events += now.events - before[1]
        c.messages += now.messages - before[2]
