"""The report of ``make bench-peers``: the table, the ratios, result.json and the plot."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

from benchmarks.nodered import INFLUXDB_NODE, NODE_RED, version
from benchmarks.paced import Result
from tests.harness import ROOT

RESULT_JSON = ROOT / "var" / "bench-peers" / "result.json"
PLOT = ROOT / "docs" / "benchmarks-peers.svg"
CELLMONS = ("cellmon-paho", "cellmon-mqtt5")
REFERENCES = ("node-red", "bare-paho")


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Node.js {version()}, Node-RED {NODE_RED}, "
        f"node-red-contrib-influxdb {INFLUXDB_NODE}, {sys.platform}"
    )


def ratios(results: list[Result]) -> dict[str, dict[str, dict[str, float]]]:
    """Per mode, each cellmon / each reference: rate and CPU per message."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode in dict.fromkeys(r.mode for r in results):
        here = {r.consumer: r for r in results if r.mode == mode}
        for c in CELLMONS:
            for ref in REFERENCES:
                if c in here and ref in here:
                    a, b = here[c], here[ref]
                    out.setdefault(mode, {})[f"{c} / {ref}"] = {
                        "rate": a.rate / b.rate if b.rate else math.nan,
                        "cpu_per_msg": a.cpu_us_per_msg / b.cpu_us_per_msg,
                    }
    return out


def table(mode: str, rows: list[Result], context: dict[str, object]) -> None:
    n = rows[0].messages
    if mode == "drained":
        publish_s = context.get("drained_publish_s", math.nan)
        print(f"\n== drained: a backlog of {n:,} QoS 1 messages (published in {publish_s:.1f} s)")
    else:
        print(f"\n== {mode}: {n:,} QoS 1 messages at {mode.split('-')[1]} msg/s, each alone")
    print(
        f"{'consumer':<14} {'msg/s':>9} {'points/s':>9} {'CPU s':>7} {'startup':>8} "
        f"{'CPU µs/msg':>11} {'peak RSS':>9}  arrived"
    )
    for r in rows:
        points = f"{r.rate:>9,.0f}" if r.writes else f"{'-':>9}"
        whole = "" if r.arrived == r.messages else "  INCOMPLETE"
        print(
            f"{r.consumer:<14} {r.rate:>9,.0f} {points} {r.cpu_s:>7.2f} {r.startup_cpu_s:>8.2f} "
            f"{r.cpu_us_per_msg:>11.1f} {r.rss_kib / 1024:>5.0f} MiB  {r.arrived:,}/{n:,}{whole}"
        )
    for r in rows:
        if r.cpu_s - r.own_cpu_s > 0.01:  # more than one process
            print(
                f"  {r.consumer}: CPU s {r.own_cpu_s:.2f} in its first process (cellmon: MQTT), "
                f"{r.cpu_s - r.own_cpu_s:.2f} in its children (cellmon: the worker)"
            )
    for r in rows:
        p = r.publisher
        if p:
            print(
                f"  publisher for {r.consumer}: {p['sent'] / p['seconds']:,.0f} msg/s, "
                f"{p['acknowledged']:,.0f} acknowledged, CPU {p['cpu_s']:.2f} s, "
                f"at worst {p['max_behind_s'] * 1000:.0f} ms behind; {r.consumer}: idle "
                f"{p['consumer_idle_load'] * 100:.0f} % of a core before, all in "
                f"{p['tail_s']:.1f} s after the last"
            )


def report(
    args: argparse.Namespace,
    results: list[Result],
    notes: dict[str, str],
    context: dict[str, object],
) -> None:
    print(f"\nmachine: {machine()}")
    for name, note in notes.items():
        print(f"{name}: {note}")
    problems = context.get("drained_problems") or {}
    assert isinstance(problems, dict)
    for name, problem in problems.items():
        print(f"{name}: CHECK FAILED: {problem}")
    modes = list(dict.fromkeys(r.mode for r in results))
    for mode in modes:
        table(mode, [r for r in results if r.mode == mode], context)
    print("\nratios (rate: higher is faster; CPU per message: lower is cheaper)")
    all_ratios = ratios(results)
    for mode, pairs in all_ratios.items():
        for pair, v in pairs.items():
            print(f"  {mode:<11} {pair:<26} rate {v['rate']:.2f}  CPU/msg {v['cpu_per_msg']:.2f}")
    print(
        "(CPU s: the consumer's whole process tree over the measured seconds; startup: what "
        "it spent before them. drained: from its connection, or a bare subscriber's first "
        "message; paced: from the publisher's first message to the last arrival)"
    )
    write_json(args, results, notes, context, all_ratios)
    if args.write_docs:
        plot(results, PLOT)
        print(f"plot: {PLOT.relative_to(ROOT)}")


def write_json(
    args: argparse.Namespace,
    results: list[Result],
    notes: dict[str, str],
    context: dict[str, object],
    all_ratios: dict[str, dict[str, dict[str, float]]],
) -> None:
    doc = {
        "machine": machine(),
        "arguments": vars(args),
        "notes": notes,
        "context": context,
        "results": [r.as_json() for r in results],
        "ratios": all_ratios,
    }
    RESULT_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULT_JSON.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"figures: {RESULT_JSON.relative_to(ROOT)}")


def label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def plot(results: list[Result], path: Path) -> None:
    """Two panels, rate and CPU µs/msg: a group of bars per mode, a bar per consumer."""
    import matplotlib  # only with --write-docs: a dev dependency

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "cellmon-bench-peers"  # stable ids in git
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r.mode for r in results))
    names = list(dict.fromkeys(r.consumer for r in results))
    width = 0.8 / len(names)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("msg/s (log scale)", "rate"), ("CPU µs per message (log scale)", "cpu_us_per_msg"))
    for ax, (title, attr) in zip(axes, panels, strict=True):
        for k, name in enumerate(names):
            by_mode = {r.mode: getattr(r, attr) for r in results if r.consumer == name}
            xs = [m + (k - (len(names) - 1) / 2) * width for m in range(len(modes))]
            bars = ax.bar(xs, [by_mode.get(m, math.nan) for m in modes], width, label=name)
            ax.bar_label(bars, fmt=label, fontsize=6, rotation=90, padding=2)
        ax.set_xticks(range(len(modes)), modes)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylim(bottom=1, top=ax.get_ylim()[1] * 3)  # bars from 1, room for the labels
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(names))
    fig.suptitle("make bench-peers: " + machine().split(", Node-RED")[0], fontsize="small")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
