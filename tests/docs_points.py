"""What cellmon writes, name by name: a simulated potline day through the real pipeline.

The config's processors (``collector.build``) run in-process over the journal of a
temporary state directory, fed by the decoder exactly as the MQTT source feeds it: a day of
a simulated potline (anode changes, taps, anode effects, with its anode history seeded 40
days back) and a few hand-made messages for what a healthy potline does not show (an anode
effect cut by a data gap, an anode change with its crew, a sample that breaks a derived
field, an event without data, a pass-through key, malformed messages, two minutes of
live single objects for ``cell_clock``). Every line the
engine commits to the outbox is read back as measurement, tag keys and field keys.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from collector import build
from collector.config.loader import load_config
from collector.engine.engine import Engine
from collector.journal import store as journal
from collector.journal.outbox import Outbox
from collector.source.decode import Decoded, Decoder
from simulator.parameters import SimParams
from simulator.payloads import PotlineSim

REPO = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS
# 2026-03-01T14:00Z, 22:00 in Asia/Shanghai: the day crosses a local midnight
START_NS = 1_772_373_600 * NS
# the decoder's clock: after the simulated day, whatever the machine's clock says
RECEIVED_NS = START_NS + 2 * DAY_NS
CELLS = 6
INTERVAL_S = 10.0
ODD_CELL = "X01"  # the hand-made cell

CONFIG = """\
state_dir: {state}
instance: docs
plant:
  timezone: Asia/Shanghai
  potlines:
    - id: P1
      baseline_sec_kwh_per_t: 13450
      baseline_voltage_v: 4.3
      rectifier_efficiency: 0.975
      ce_basis: measured
targets:
  anode_cycle_days: 29
  anode_settle_band_mv: 20
"""


@dataclass
class Written:
    """Tag keys and field keys seen per measurement."""

    tags: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    fields: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, line: str) -> None:
        series, rest = split_unescaped(line, " ", quotes=False, limit=1)
        measurement, *tags = split_unescaped(series, ",", quotes=False)
        field_set, _time = rest.rsplit(" ", 1)
        self.tags[measurement].update(t.split("=", 1)[0] for t in tags)
        self.fields[measurement].update(
            split_unescaped(f, "=", quotes=False, limit=1)[0]
            for f in split_unescaped(field_set, ",", quotes=True)
        )


def split_unescaped(text: str, sep: str, *, quotes: bool, limit: int = -1) -> list[str]:
    """``text`` split at ``sep`` where it is neither backslash-escaped nor (with ``quotes``)
    inside a double-quoted string; escapes are kept, as names here never hold any."""
    parts: list[str] = []
    current: list[str] = []
    escaped = quoted = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quotes and ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted and (limit < 0 or len(parts) < limit):
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _odd_messages(t0_ns: int) -> list[tuple[str, bytes]]:
    """The hand-made messages of cell X01, starting at ``t0_ns``."""
    telemetry, event = f"smelter/P1/{ODD_CELL}/telemetry", f"smelter/P1/{ODD_CELL}/event"

    def sample(t_s: float, volts: float, current: float = 300.0) -> dict[str, object]:
        ts = (t0_ns + int(t_s * NS)) // 1_000_000
        return {"ts": ts, "cell_voltage_v": volts, "line_current_ka": current, "pot_age_d": 1200}

    normal = [sample(t, 4.2) for t in range(0, 600, 10)]
    effect = [sample(610, 31.0), sample(620, 33.0)]  # then 3 minutes of silence: cut by the gap
    after = [sample(t, 4.2) for t in range(800, 1200, 10)]
    broken = [sample(1200, 4.2, current=0.0)]  # resistance = … / line_current_ka: math_error
    ts_ms = (t0_ns + 1210 * NS) // 1_000_000
    return [
        (telemetry, orjson.dumps([*normal, *effect])),
        (telemetry, orjson.dumps([*after, *broken])),
        (event, orjson.dumps({"ts": ts_ms, "type": "door_opened"})),
        (
            event,
            orjson.dumps(
                {"ts": ts_ms, "type": "anode_change", "anode": 1, "block": "590", "crew": "B"}
            ),
        ),
        (telemetry, b'{"ts": 1, "cell_voltage_v": '),  # not JSON
        (telemetry, orjson.dumps({"ts": ts_ms, "line_current_ka": 300.0})),  # missing key
    ]


def _feed_live(decoder: Decoder, inbox: journal.Inbox, t0_ns: int) -> None:
    """Cell X01 sending single objects for two minutes from ``t0_ns``, each decoded 0.25 s
    after its ``ts``: live samples, which ``cell_clock`` times (the arrays are not)."""
    out = Decoded()
    for t_s in range(1300, 1420, 10):
        ts_ns = t0_ns + t_s * NS
        body = {"ts": ts_ns // 1_000_000, "cell_voltage_v": 4.2, "line_current_ka": 300.0}
        topic = f"smelter/P1/{ODD_CELL}/telemetry"
        decoder.decode(topic, orjson.dumps(body), ts_ns + NS // 4, out)
    inbox.append(out.samples, out.events, {"messages": len(out.samples)})


def _sim_messages(sim: PotlineSim, t0_ns: int, t1_ns: int) -> list[tuple[str, bytes]]:
    """The simulated potline's telemetry (arrays of 60 samples) and events in [t0, t1)."""
    steps = sim.steps(t0_ns, t1_ns)
    columns = sim.columns(steps.start, len(steps))
    messages = [(f"smelter/P1/{sim.cell_ids[c]}/telemetry", body) for c, body in columns.encode(60)]
    messages += [
        (f"smelter/P1/{e.cell}/event", orjson.dumps(e.payload)) for e in sim.events(t0_ns, t1_ns)
    ]
    return messages


def _feed(decoder: Decoder, inbox: journal.Inbox, messages: list[tuple[str, bytes]]) -> None:
    """Decode and commit the messages as the MQTT source does, counters included."""
    out = Decoded()
    for topic, payload in messages:
        decoder.decode(topic, payload, RECEIVED_NS, out)
    counts: dict[str, int] = {"messages": len(messages), "rejected": len(out.rejections)}
    for r in out.rejections:
        counts[f"rejected_{r.reason}"] = counts.get(f"rejected_{r.reason}", 0) + 1
    inbox.append(out.samples, out.events, counts)


def _drain(engine: Engine) -> None:
    while engine.step():
        pass


def written_by_a_potline_day(tmp: Path) -> Written:
    """Every measurement, tag key and field key the pipeline wrote for the scenario."""
    (tmp / "rules").mkdir()
    shutil.copy(REPO / "config" / "rules" / "default.yaml", tmp / "rules")
    (tmp / "cellmon.yaml").write_text(CONFIG.format(state=tmp / "state"))
    cfg = load_config(tmp / "cellmon.yaml")
    cfg.state_path.mkdir()
    decoder = build.decoder(cfg)
    inbox = journal.Inbox(journal.connect_inbox(cfg.state_path))
    engine = build.engine(cfg)
    params = SimParams(ae_rate_per_cell_day=4.0, tap_interval_h=(6.0, 8.0))
    sim = PotlineSim("P1", CELLS, seed=7, start_ns=START_NS, interval_s=INTERVAL_S, params=params)
    history = sim.events(START_NS - 40 * DAY_NS, START_NS)
    _feed(
        decoder, inbox, [(f"smelter/P1/{e.cell}/event", orjson.dumps(e.payload)) for e in history]
    )
    _drain(engine)
    for hour in range(24):
        t0 = START_NS + hour * HOUR_NS
        messages = _sim_messages(sim, t0, t0 + HOUR_NS)
        if hour == 3:
            messages += _odd_messages(t0)
        _feed(decoder, inbox, messages)
        if hour == 3:
            _feed_live(decoder, inbox, t0)
        _drain(engine)
    engine.finish()
    body = Outbox(journal.connect_journal(cfg.state_path)).take(10**9)
    assert body is not None
    written = Written()
    for line in body.body.decode().splitlines():
        if line:
            written.add(line)
    return written
