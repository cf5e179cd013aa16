"""Small simulated potlines on a fixed grid, shared by the simulator's tests."""

from simulator.parameters import SimParams
from simulator.payloads import PotlineSim

T0 = 1_230_768_000_000_000_000  # 2009-01-01T00:00:00Z in ns
S = 1_000_000_000
HOUR = 3600 * S
DAY = 86400 * S


def sim(cells: int = 4, seed: int = 1, interval_s: float = 60.0, **params) -> PotlineSim:
    return PotlineSim(
        "P1", cells, seed=seed, start_ns=T0, interval_s=interval_s, params=SimParams(**params)
    )


def all_payloads(s: PotlineSim, t1_ns: int) -> list[dict]:
    return [p for step in s.telemetry(T0, t1_ns) for p in step.payloads]
