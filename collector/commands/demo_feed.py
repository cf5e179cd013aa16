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
            # Each slice spoils other messages, reproducibly for a given --seed, and has its
            # own client id: amqtt clears the queue of a session whose id connects again.
            options = replace(
                self.options,
                speed=speed,
                seed=self.options.seed * 2**32 + index,
                client_id=f"{self.options.client_id}-{index}",
            )
            self._add(publish(self.sim, t, end, options))
            self.simulated_s = (end - self.sim.start_ns) / NS_PER_S
            t = end

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
