"""The ``cellmon simulate`` subcommand: publish a simulated potline to an MQTT broker."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from simulator.parameters import NS_PER_S
from simulator.payloads import DEFAULT_EVENT_TOPIC, DEFAULT_TELEMETRY_TOPIC, PotlineSim
from simulator.publisher import MAX_ARRAY_SIZE, PublishOptions, publish

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339_ns(text: str) -> int:
    """Epoch nanoseconds of an RFC 3339 time; an offset is required, as in the contract."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"not an RFC 3339 time: {text!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if moment.tzinfo is None:
        msg = f"{text!r} has no UTC offset (e.g. Z or +08:00)"
        raise argparse.ArgumentTypeError(msg)
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cellmon simulate``."""
    parser.add_argument("--host", default="127.0.0.1", help="MQTT broker host")
    parser.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    parser.add_argument("--potline", default="P1", help="potline id (one topic level)")
    parser.add_argument("--cells", type=int, default=240, help="cells C001..Cnnn")
    parser.add_argument("--interval-s", type=float, default=1.0, help="sample interval, s")
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--duration-s", type=float, default=60.0, help="simulated time, s")
    span.add_argument("--steps", type=int, help="number of sample steps, instead of a duration")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="1 real time, k > 0 k times faster, 0 as fast as the broker acknowledges",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same data")
    parser.add_argument(
        "--array-size",
        type=int,
        default=1,
        help=f"samples per message (1..{MAX_ARRAY_SIZE}); > 1 sends JSON arrays",
    )
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="MQTT QoS")
    parser.add_argument(
        "--start",
        type=rfc3339_ns,
        help="time of the first sample, RFC 3339 (default: now in real time or slower; "
        "otherwise now minus the simulated time, so no sample is ever in the future)",
    )
    parser.add_argument(
        "--bad-fraction", type=float, default=0.0, help="share of malformed telemetry messages"
    )
    parser.add_argument(
        "--dup-fraction", type=float, default=0.0, help="share of telemetry messages sent twice"
    )
    parser.add_argument(
        "--username-env", help="environment variable holding the MQTT user name, if any"
    )
    parser.add_argument(
        "--password-env", help="environment variable holding the MQTT password, if any"
    )
    parser.add_argument("--telemetry-topic", default=DEFAULT_TELEMETRY_TOPIC)
    parser.add_argument("--event-topic", default=DEFAULT_EVENT_TOPIC)
    parser.add_argument("--client-id", help="MQTT client id (default: cellmon-sim-POTLINE-PID)")


def _span_ns(args: argparse.Namespace) -> int:
    if args.steps is not None:
        steps: float = args.steps * args.interval_s
        return round(steps * NS_PER_S)
    duration: float = args.duration_s
    return round(duration * NS_PER_S)


def _start_ns(args: argparse.Namespace, span_ns: int) -> int:
    """The given start, or one that keeps every sample in the past.

    The pipeline rejects samples more than 5 minutes in the future, which a run faster
    than real time would make if it started now; so such a run ends now instead.
    """
    if args.start is not None:
        return int(args.start)
    now_ns = time.time_ns()
    return now_ns if 0 < args.speed <= 1 else now_ns - span_ns


def run(args: argparse.Namespace) -> int:
    """Publish, print a summary; exit status 1 when the broker is unreachable or stalls."""
    span_ns = _span_ns(args)
    try:
        options = PublishOptions(
            host=args.host,
            port=args.port,
            qos=args.qos,
            speed=args.speed,
            array_size=args.array_size,
            bad_fraction=args.bad_fraction,
            dup_fraction=args.dup_fraction,
            telemetry_topic=args.telemetry_topic,
            event_topic=args.event_topic,
            client_id=args.client_id,
            seed=args.seed,
            username=os.environ.get(args.username_env or "") or None,
            password=os.environ.get(args.password_env or "") or None,
        )
        sim = PotlineSim(
            args.potline,
            args.cells,
            seed=args.seed,
            start_ns=_start_ns(args, span_ns),
            interval_s=args.interval_s,
        )
    except ValueError as exc:
        print(f"cellmon simulate: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    try:
        counts = publish(sim, sim.start_ns, sim.start_ns + span_ns, options)
    except OSError as exc:  # ConnectionError, TimeoutError and socket errors
        print(f"cellmon simulate: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - began
    print(
        f"{sim.potline} -> {args.host}:{args.port}: {counts.summary()}; "
        f"{elapsed:.1f} s, {counts.messages / max(elapsed, 1e-9):.0f} messages/s"
    )
    return 0
