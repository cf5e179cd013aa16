"""The ``cellmon simulate`` subcommand: publish a simulated potline to an MQTT broker."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from simulator.parameters import NS_PER_S
from simulator.payloads import DEFAULT_EVENT_TOPIC, DEFAULT_TELEMETRY_TOPIC, PotlineSim
from simulator.publisher import MAX_ARRAY_SIZE, PublishCounts, PublishOptions, publish
from simulator.sparkplug import DEFAULT_SECTION_CELLS, LineOptions
from simulator.sparkplug import publish as publish_sparkplug
from simulator.sparkplug_node import NodeOptions, SparkplugCounts

Counts = PublishCounts | SparkplugCounts

# Sparkplug 3.0 recommends QoS 0 for births and data; the JSON contract's default is 1.
DEFAULT_QOS = {"json": 1, "sparkplug": 0}

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
    parser.add_argument(
        "--qos", type=int, choices=(0, 1, 2), help="MQTT QoS (default 1 json, 0 sparkplug)"
    )
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
    parser.add_argument(
        "--client-id",
        help="MQTT client id (default: cellmon-sim-POTLINE-PID); "
        "with sparkplug the prefix of each node's (default: cellmon-sim-NODE-PID)",
    )
    _add_sparkplug_arguments(parser)


def _add_sparkplug_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``--format sparkplug``; the profile is in ``simulator.sparkplug_profile``."""
    parser.add_argument(
        "--format",
        choices=("json", "sparkplug"),
        default="json",
        help="json: the contract's topics; sparkplug: Sparkplug B 3.0 edge nodes",
    )
    parser.add_argument(
        "--section-cells",
        type=int,
        default=DEFAULT_SECTION_CELLS,
        help="sparkplug: cells per edge node (POTLINE-S01, ...)",
    )
    parser.add_argument(
        "--drop-every",
        type=int,
        default=0,
        help="sparkplug: lose every Nth DDATA of a node, its seq used (0 never)",
    )
    parser.add_argument(
        "--death-every-s",
        type=float,
        default=0.0,
        help="sparkplug: every S simulated seconds the next device sends DDEATH, "
        "DBIRTH a step later (0 never)",
    )
    parser.add_argument(
        "--primary-host", help="sparkplug: wait for this host application's STATE online"
    )


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
    qos = DEFAULT_QOS[args.format] if args.qos is None else args.qos
    try:
        sim = PotlineSim(
            args.potline,
            args.cells,
            seed=args.seed,
            start_ns=_start_ns(args, span_ns),
            interval_s=args.interval_s,
        )
        if args.format == "sparkplug":
            job = _sparkplug_job(args, sim, span_ns, qos)
        else:
            job = _json_job(args, sim, span_ns, qos)
    except ValueError as exc:
        print(f"cellmon simulate: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    try:
        counts = job()
    except OSError as exc:  # ConnectionError, TimeoutError and socket errors
        print(f"cellmon simulate: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - began
    print(
        f"{sim.potline} -> {args.host}:{args.port}: {counts.summary()}; "
        f"{elapsed:.1f} s, {counts.messages / max(elapsed, 1e-9):.0f} messages/s"
    )
    return 0


def _json_job(
    args: argparse.Namespace, sim: PotlineSim, span_ns: int, qos: int
) -> Callable[[], Counts]:
    """The contract's JSON messages; options checked now, before connecting."""
    username, password = _login(args)
    options = PublishOptions(
        host=args.host,
        port=args.port,
        qos=qos,
        speed=args.speed,
        array_size=args.array_size,
        bad_fraction=args.bad_fraction,
        dup_fraction=args.dup_fraction,
        telemetry_topic=args.telemetry_topic,
        event_topic=args.event_topic,
        client_id=args.client_id,
        seed=args.seed,
        username=username,
        password=password,
    )
    return lambda: publish(sim, sim.start_ns, sim.start_ns + span_ns, options)


def _sparkplug_job(
    args: argparse.Namespace, sim: PotlineSim, span_ns: int, qos: int
) -> Callable[[], Counts]:
    """Sparkplug B edge nodes; the JSON-only options are refused rather than ignored."""
    if args.array_size != 1 or args.bad_fraction or args.dup_fraction:
        msg = "--array-size, --bad-fraction and --dup-fraction are for --format json only"
        raise ValueError(msg)
    username, password = _login(args)
    options = NodeOptions(
        host=args.host,
        port=args.port,
        qos=qos,
        drop_every=args.drop_every,
        primary_host=args.primary_host,
        client_prefix=args.client_id or "cellmon-sim",
        username=username,
        password=password,
    )
    line = LineOptions(
        speed=args.speed, section_cells=args.section_cells, death_every_s=args.death_every_s
    )
    return lambda: publish_sparkplug(sim, sim.start_ns, sim.start_ns + span_ns, options, line)


def _login(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """User name and password from the environment variables the options name."""
    return (
        os.environ.get(args.username_env or "") or None,
        os.environ.get(args.password_env or "") or None,
    )
