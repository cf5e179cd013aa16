"""The typed, frozen configuration of cellmon: the keys of ``cellmon.yaml``.

Each section is a model with its defaults, commented in ``config/cellmon.yaml``; they live
here or beside the code they configure (``mqtt`` and ``ingest`` in ``collector.source``,
``influx``, ``sink`` and ``alerts`` in ``collector.sinks``), and nowhere else: runtime
objects are built from them in ``collector.build``. ``collector.config.loader`` reads the
files and words the errors.
"""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator

from collector.config.rules import Rules
from collector.config.schema import (
    Count,
    LevelName,
    Listen,
    NonEmpty,
    NonNegative,
    Positive,
    Section,
    ShiftStart,
    fail,
    host_port,
    zone,
)
from collector.config.yamlsource import KeyPath
from collector.sinks.alerts import AlertsConfig
from collector.sinks.options import DEFAULT_SINK, SINK_OPTIONS, InfluxConfig, SinkOptions
from collector.source.decode import IngestConfig
from collector.source.mqtt_client import MqttConfig

RULES_DIR = "rules"
SettleMinutes = Annotated[int, Field(ge=10)]
"""A change is followed at least the 10 minutes running that settle it."""


class Targets(Section):
    """The plant's goals; each potline may override any of them."""

    sec_savings_kwh_per_t: Positive = 100.0
    anode_cycle_days: Positive = 31.0
    anode_cycle_tolerance_days: NonNegative = 1.0
    anode_block: NonEmpty = "590"
    anode_effect_threshold_v: Positive = 8.0
    tap_cycle_max_h: Positive = 72.0
    anode_settle_band_mv: Positive = 50.0
    anode_settle_max_min: SettleMinutes = 480
    clock_drift_limit_s: Positive | None = 30.0  # null: no clock_drift alarm


NULLABLE_TARGETS = frozenset(("clock_drift_limit_s",))
"""Target keys whose null means something (a watch turned off), so an override may set it;
they are no rule constants, which are always numbers (``rule_constants``)."""


class TargetsOverride(Section):
    """A potline's own goals; a key left out keeps the plant's value.

    A key of ``NULLABLE_TARGETS`` set to null turns its watch off for the potline; any other
    null is the same as leaving the key out.
    """

    sec_savings_kwh_per_t: Positive | None = None
    anode_cycle_days: Positive | None = None
    anode_cycle_tolerance_days: NonNegative | None = None
    anode_block: NonEmpty | None = None
    anode_effect_threshold_v: Positive | None = None
    tap_cycle_max_h: Positive | None = None
    anode_settle_band_mv: Positive | None = None
    anode_settle_max_min: SettleMinutes | None = None
    clock_drift_limit_s: Positive | None = None


class PotlineConfig(Section):
    """One potline; its id is the ``{potline}`` topic level and the ``potline`` tag."""

    id: LevelName
    current_efficiency: float = Field(default=0.925, gt=0, le=1)
    ce_basis: Literal["configured", "measured"] = "configured"
    baseline_sec_kwh_per_t: Positive
    baseline_voltage_v: Positive | None = None
    rectifier_efficiency: float | None = Field(default=None, gt=0, le=1)
    anodes_per_cell: Count = 40
    targets: TargetsOverride = TargetsOverride()


class PlantConfig(Section):
    """The plant's calendar, tariff and potlines; periods are cut in its local time."""

    timezone: Annotated[str, AfterValidator(zone)] = "Asia/Shanghai"
    shifts: list[ShiftStart] = Field(default=["00:00", "08:00", "16:00"], min_length=1)
    max_gap_s: Positive = 60.0
    tariff_cny_per_kwh: NonNegative = 0.38
    kpi_update_s: Positive = 60.0
    complete_grace_s: NonNegative = 900.0
    potlines: list[PotlineConfig] = Field(min_length=1)

    @field_validator("shifts")
    @classmethod
    def _increasing(cls, shifts: list[str]) -> list[str]:
        problems = [
            ((i,), f"must be after {shifts[i - 1]!r}: shifts are strictly increasing")
            for i in range(1, len(shifts))
            if shifts[i] <= shifts[i - 1]
        ]
        if problems:
            fail(problems, shifts)
        return shifts

    @field_validator("potlines")
    @classmethod
    def _unique_ids(cls, potlines: list[PotlineConfig]) -> list[PotlineConfig]:
        first: dict[str, int] = {}
        problems: list[tuple[KeyPath, str]] = []
        for i, potline in enumerate(potlines):
            if potline.id in first:
                problems.append(((i, "id"), f"duplicate id, also potlines[{first[potline.id]}]"))
            first.setdefault(potline.id, i)
        if problems:
            fail(problems, potlines)
        return potlines

    @property
    def shift_times(self) -> tuple[time, ...]:
        """The shift starts as times of day, in ``timezone``."""
        return tuple(time(int(s[:2]), int(s[3:])) for s in self.shifts)


class PfcConfig(Section):
    """IPCC 2006 Tier 2 slope method; defaults for centre-worked prebake cells, GWP AR5."""

    slope_cf4: Positive = 0.143
    c2f6_ratio: NonNegative = 0.121
    gwp_cf4: Positive = 6630.0
    gwp_c2f6: Positive = 11100.0
    min_duration_s: NonNegative = 0.0


class MetricsConfig(Section):
    """The HTTP endpoint of ``/metrics`` (Prometheus) and ``/health`` (contract 6.6)."""

    listen: Listen | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None: no endpoint."""
        return None if self.listen is None else host_port(self.listen)

    def shifted(self, offset: int) -> MetricsConfig:
        """The endpoint of the shard at ``offset``: the same host, port + offset.

        One port per shard, not one merged endpoint: each shard's counters and broker
        session live in its own process, and Prometheus sums targets as easily.
        """
        if self.address is None:
            return self
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        return MetricsConfig.model_construct(listen=f"{host}:{port + offset}")


class ShardConfig(Section):
    """A process of ``cellmon run`` over some of the potlines (contract 5.1).

    Each shard is a whole pipeline (MQTT connection ``{client_id}-{name}``, journal in
    ``{state_dir}/{name}``, worker, self-metrics as instance ``{instance}-{name}``), so a
    plant's ingest uses every core.
    """

    name: LevelName
    potlines: list[LevelName] = Field(min_length=1)


def _sink_type(value: Any) -> str | None:
    """The ``type`` of a ``sink`` mapping; a mapping without one is the default sink."""
    if isinstance(value, dict):
        kind = value.get("type", DEFAULT_SINK)
        return kind if isinstance(kind, str) else None
    return getattr(value, "type", None)


if TYPE_CHECKING:
    SinkConfig = SinkOptions
else:  # one member per sink type (collector.sinks.options.SINK_OPTIONS), chosen by its ``type``
    SinkConfig = Annotated[
        Union[tuple(Annotated[model, Tag(name)] for name, model in SINK_OPTIONS.items())],  # noqa: UP007 - built at run time
        Discriminator(_sink_type),
    ]


class ConfigFile(Section):
    """The keys of ``cellmon.yaml``."""

    mqtt: MqttConfig = MqttConfig()
    ingest: IngestConfig = IngestConfig()
    influx: InfluxConfig = InfluxConfig()
    sink: SinkConfig = Field(
        default_factory=lambda: SINK_OPTIONS[DEFAULT_SINK].model_validate({"type": DEFAULT_SINK})
    )
    alerts: AlertsConfig = AlertsConfig()
    state_dir: NonEmpty = "var/cellmon"
    metrics_interval_s: Positive = 10.0
    metrics: MetricsConfig = MetricsConfig()
    rules_check_s: NonNegative = 2.0
    instance: NonEmpty | None = None
    plant: PlantConfig
    targets: Targets = Targets()
    pfc: PfcConfig = PfcConfig()
    shards: list[ShardConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shards_split_the_plant(self) -> ConfigFile:
        """Every potline in exactly one shard, and no shard with a potline not configured."""
        if not self.shards:
            return self
        ids = [p.id for p in self.plant.potlines]
        owner: dict[str, int] = {}
        problems: list[tuple[KeyPath, str]] = []
        for i, shard in enumerate(self.shards):
            for j, potline in enumerate(shard.potlines):
                where: KeyPath = ("shards", i, "potlines", j)
                if potline not in ids:
                    problems.append((where, f"{potline!r} is not a potline of plant.potlines"))
                elif potline in owner:
                    problems.append(
                        (where, f"{potline!r} is owned by shards[{owner[potline]}] too")
                    )
                owner.setdefault(potline, i)
        names = [s.name for s in self.shards]
        problems += [
            (("shards", i, "name"), f"duplicate name, also shards[{names.index(n)}]")
            for i, n in enumerate(names)
            if names.index(n) != i
        ]
        problems += [
            (("shards",), f"potline {p!r} is owned by no shard") for p in ids if p not in owner
        ]
        if problems:
            fail(problems, self)
        return self


class Config(ConfigFile):
    """The whole configuration: the file's keys, plus where it came from and its rules."""

    source: Path
    rules: Rules

    @property
    def instance_name(self) -> str:
        """The ``instance`` tag of the self-metrics: unique per process, like the client id."""
        return self.instance or self.mqtt.client_id

    @property
    def state_path(self) -> Path:
        """The state directory; a relative one is from the working directory, like shell paths."""
        return Path(self.state_dir).expanduser()

    def potline(self, potline_id: str) -> PotlineConfig | None:
        """The configured potline, or None for one that is not in the config."""
        return next((p for p in self.plant.potlines if p.id == potline_id), None)

    def targets_for(self, potline_id: str) -> Targets:
        """The plant's targets with the potline's overrides; an unknown potline gets the plant's."""
        potline = self.potline(potline_id)
        if potline is None:
            return self.targets
        override = potline.targets
        update = override.model_dump(exclude_none=True)
        update |= {k: None for k in NULLABLE_TARGETS & override.model_fields_set if k not in update}
        return self.targets.model_copy(update=update)

    def shard(self, shard: ShardConfig) -> Config:
        """The config of one shard: its potlines, client id, state directory and instance."""
        return self.model_copy(
            update={
                "plant": self.plant.model_copy(
                    update={"potlines": [p for p in self.plant.potlines if p.id in shard.potlines]}
                ),
                "mqtt": self.mqtt.model_copy(
                    update={"client_id": f"{self.mqtt.client_id}-{shard.name}"}
                ),
                "state_dir": f"{self.state_dir}/{shard.name}",
                "instance": f"{self.instance_name}-{shard.name}",
                "metrics": self.metrics.shifted(self.shards.index(shard)),
                "shards": [],
            }
        )

    def split(self, count: int) -> Config:
        """The config with its potlines dealt round-robin into ``count`` shards, s1 to sN."""
        ids = [p.id for p in self.plant.potlines]
        shards = [
            ShardConfig(name=f"s{k + 1}", potlines=ids[k::count])
            for k in range(count)
            if ids[k::count]
        ]
        return self.model_copy(update={"shards": shards})

    @staticmethod
    def secret(env_name: str | None) -> str | None:
        """See the module-level ``secret``; here so that callers holding a config need no import."""
        return secret(env_name)


def secret(env_name: str | None) -> str | None:
    """The value of a secret's environment variable; None when unnamed, unset or empty.

    Secrets are read when a client is built and never stored in the config, so they cannot
    end up in a repr, a dump or a log line.
    """
    return (os.environ.get(env_name) or None) if env_name else None
