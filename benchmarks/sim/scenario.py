"""Simulation scenarios: YAML files validated into frozen pydantic models.

A scenario describes the fleet (hosts, their I/O capacity, their VMs and the one job type each
serves), the job types (CPU seconds and I/O operations per job), the arrivals, optionally who
submits them (`submitters`: each with a share of the arrivals or arrivals of its own, a priority,
a mix of job types, a stretch of time), the telemetry path (sampling, delay, outages, windows),
the dispatcher's settings, and timed events (a host's capacity changing). Files live in `benchmarks/scenarios/<name>.yaml` and are passed by name or
by path. Unknown keys are refused with the key's full path, like every vmlb config.

This module owns the scenario format only; the model is `benchmarks.sim.engine`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from pipeline.errors import ConfigError
from pipeline.events import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Identifier,
    describe_validation_error,
)
from pipeline.policy.registry import POLICY_NAMES
from pipeline.policy.snapshot import PolicyConfig
from pipeline.stats.windows import WindowConfig
from producers.emulated.collapse import DEFAULT_COLLAPSE

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

#: The simulator's yardstick, not a dispatch policy: it reads the simulated fleet itself
#: (`benchmarks.sim.oracle`), so it exists only here, never live.
ORACLE = "oracle"
#: The oracle bounded by the completion notice delay (`telemetry.completion_delay_s`): it
#: learns of a job's end as late as an online policy does. Run only when named.
ORACLE_NOTICE = "oracle-notice"
ORACLES: tuple[str, ...] = (ORACLE, ORACLE_NOTICE)
#: What a scenario's `policies` and `vmlb bench sim --policies` accept.
SIM_POLICY_NAMES: tuple[str, ...] = (*POLICY_NAMES, *ORACLES)
#: What a scenario runs when it names no policies.
DEFAULT_SIM_POLICIES: tuple[str, ...] = (*POLICY_NAMES, ORACLE)

_POLICY = PolicyConfig()
_WINDOWS = WindowConfig()

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SizeDistribution(StrEnum):
    FIXED = "fixed"  # every job of the type costs exactly cpu_s and io_ops
    EXPONENTIAL = "exponential"  # each job's cost is scaled by an Exp(1) factor (mean 1)


class JobType(_Model):
    """One job type: its cost at full speed, and its share of the arrivals."""

    #: CPU seconds a job takes when its host's I/O channel is not saturated.
    cpu_s: Positive
    #: I/O operations one job issues (the paper's io_per_job), spread evenly over its run.
    io_ops: NonNegative
    #: Relative share of arrivals (normalised over all types).
    weight: Positive = 1.0
    size: SizeDistribution = SizeDistribution.EXPONENTIAL

    @property
    def io_rate_ops_per_s(self) -> float:
        """What one job of this type asks of the channel while it runs."""
        return self.io_ops / self.cpu_s


class HostGroup(_Model):
    """`count` identical hosts, each with one VM per listed job type.

    `device_ops_per_s`, optional, caps each VM's own I/O (as an emulated guest's device does,
    `producers.emulated.channel`): one entry per listed VM (null: no cap), or one number for
    all of them. A job whose I/O over its CPU seconds asks more than its VM's cap runs longer,
    pacing its I/O at the cap, and asks its host's channel the cap (`benchmarks.sim.fleet`).
    """

    count: int = Field(1, ge=1)
    capacity_ops_per_s: Positive
    vms: list[str] = Field(min_length=1)
    device_ops_per_s: Positive | list[Positive | None] | None = None

    @model_validator(mode="after")
    def _one_cap_per_vm(self) -> Self:
        caps = self.device_ops_per_s
        if isinstance(caps, list) and len(caps) != len(self.vms):
            raise ValueError(
                f"device_ops_per_s: {len(caps)} entries for {len(self.vms)} VMs "
                "(one per VM, null for no cap, or one number for all)"
            )
        return self

    def device_cap(self, index: int) -> float | None:
        """The device cap of the group's `index`-th VM (None: no cap)."""
        caps = self.device_ops_per_s
        return caps[index] if isinstance(caps, list) else caps


class Channel(_Model):
    """The host's driver-domain I/O channel (see `benchmarks.sim.channel`)."""

    #: How fast effective capacity falls past saturation: 0 = plain processor sharing. The
    #: default is the emulated hosts' (`producers.emulated.collapse`).
    collapse: NonNegative = DEFAULT_COLLAPSE


class ArrivalKind(StrEnum):
    POISSON = "poisson"
    BURST = "burst"
    DIURNAL = "diurnal"


class Burst(_Model):
    """Every `every_s`, `jobs` extra jobs arrive within `spread_s` (on top of the base rate)."""

    every_s: Positive
    jobs: int = Field(ge=1)
    spread_s: NonNegative = 0.0
    first_at_s: NonNegative = 5.0


class Diurnal(_Model):
    """The rate follows base * (1 + amplitude * sin(2π t / period_s))."""

    period_s: Positive
    amplitude: float = Field(0.5, ge=0, le=1)


class Arrivals(_Model):
    kind: ArrivalKind = ArrivalKind.POISSON
    #: Offered I/O as a fraction of the fleet's total I/O capacity (sets the base rate) ...
    offered_load: Positive | None = None
    #: ... or the base rate in jobs per second. Exactly one of the two.
    rate_per_s: Positive | None = None
    burst: Burst | None = None
    diurnal: Diurnal | None = None

    @model_validator(mode="after")
    def _one_rate_and_matching_shape(self) -> Self:
        if (self.offered_load is None) == (self.rate_per_s is None):
            raise ValueError("give exactly one of offered_load and rate_per_s")
        if self.kind is ArrivalKind.BURST and self.burst is None:
            raise ValueError("kind burst needs a burst section")
        if self.kind is ArrivalKind.DIURNAL and self.diurnal is None:
            raise ValueError("kind diurnal needs a diurnal section")
        return self


class Submitter(_Model):
    """Who submits a stream of jobs (the live `JobSubmission.submitter`), at which priority.

    Its jobs are either a `share` of the scenario's `arrivals` or `arrivals` of its own (the same
    shape), confined to [from_s, to_s); `job_types` reweights the mix of its jobs (default: the
    scenario's weights). A scenario without submitters has one anonymous one, at the default
    priority, as live jobs without a submitter are.
    """

    name: Identifier
    share: float | None = Field(None, gt=0, le=1)
    arrivals: Arrivals | None = None
    priority: Annotated[int, Strict(), Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = DEFAULT_PRIORITY
    #: Job type -> relative weight, for this submitter's jobs only.
    job_types: dict[str, Positive] | None = Field(None, min_length=1)
    from_s: NonNegative = 0.0
    to_s: Positive | None = None

    @model_validator(mode="after")
    def _one_source_and_a_stretch(self) -> Self:
        if (self.share is None) == (self.arrivals is None):
            raise ValueError("give exactly one of share (of the scenario's arrivals) and arrivals")
        if self.to_s is not None and self.to_s <= self.from_s:
            raise ValueError(f"to_s {self.to_s:g} must be after from_s {self.from_s:g}")
        return self

    def submits_at(self, at_s: float) -> bool:
        return self.from_s <= at_s and (self.to_s is None or at_s < self.to_s)


class IoPerJobSource(StrEnum):
    MEASURED = "measured"  # ratio of windowed sums of delivered telemetry, as the pipeline does
    CALIBRATED = "calibrated"  # the true mean, as if measured at setup (paper Table 2)


class Outage(_Model):
    """Samples taken on these hosts in [from_s, to_s) never reach the dispatcher."""

    hosts: list[str] = Field(min_length=1)
    from_s: NonNegative
    to_s: Positive


class Telemetry(_Model):
    """The telemetry path; the windows default to the live pipeline's (`WindowConfig`)."""

    interval_s: Positive = 1.0
    #: Sample time to arrival at the dispatcher (Dom0 -> Kafka -> vm_stats -> vm-state).
    delay_s: NonNegative = 0.5
    #: A job's end to the dispatcher knowing of it: the guest's completion travels on its own
    #: path (guest -> Kafka -> dispatcher), not with Dom0's samples, so outages do not lose it.
    completion_delay_s: NonNegative = 0.05
    rate_window_s: Positive = _WINDOWS.rate_window_s
    io_per_job_window_s: Positive = _WINDOWS.io_per_job_window_s
    bucket_s: Positive = _WINDOWS.bucket_s
    io_per_job_min_jobs: int = Field(_WINDOWS.io_per_job_min_jobs, ge=1)
    io_per_job: IoPerJobSource = IoPerJobSource.MEASURED
    outages: list[Outage] = Field(default_factory=list)

    def window_config(self) -> WindowConfig:
        return WindowConfig(
            rate_window_s=self.rate_window_s,
            io_per_job_window_s=self.io_per_job_window_s,
            bucket_s=self.bucket_s,
            io_per_job_min_jobs=self.io_per_job_min_jobs,
        )


class Dispatcher(_Model):
    #: The sim's host limit is this fraction of the host's capacity as calibrated at setup.
    limit_fraction: float = Field(0.9, gt=0, le=1.5)
    retry_interval_s: Positive = 0.25
    #: A job waiting at the dispatcher longer than this expires (None: it waits until the end).
    deadline_s: Positive | None = None
    #: The snapshot is rebuilt on new telemetry, and at least this often.
    snapshot_max_age_s: Positive = 0.5
    # The policy's tunables, defaulting to the live dispatcher's (`PolicyConfig`).
    stale_after_s: Positive = _POLICY.stale_after_s
    lag_limit_s: Positive = _POLICY.lag_limit_s
    horizon_s: Positive = _POLICY.horizon_s
    warmup_outstanding_per_vm: int = Field(_POLICY.warmup_outstanding_per_vm, ge=1)
    choices: int = Field(_POLICY.choices, ge=1)
    probe_limit: int = Field(_POLICY.probe_limit, ge=1)
    #: io-aware's strictness (`PolicyConfig.hold_s`); `inf` never sends a job over a limit.
    hold_s: float = Field(_POLICY.hold_s, ge=0)
    hysteresis: float = Field(_POLICY.hysteresis, ge=0, lt=1)
    #: Waiting jobs' submitters take turns (`WaitingQueue`, as live); false: every job waits
    #: as one submitter would, oldest first within a priority (the baseline fairness is
    #: measured against). Results still name each job's submitter.
    fair_queueing: bool = True

    def policy_config(self, meter_window_s: float = _POLICY.meter_window_s) -> PolicyConfig:
        """The policy's tunables; `meter_window_s` is the telemetry's rate window."""
        return PolicyConfig(
            meter_window_s=meter_window_s,
            stale_after_s=self.stale_after_s,
            lag_limit_s=self.lag_limit_s,
            horizon_s=self.horizon_s,
            warmup_outstanding_per_vm=self.warmup_outstanding_per_vm,
            choices=self.choices,
            probe_limit=self.probe_limit,
            hold_s=self.hold_s,
            hysteresis=self.hysteresis,
        )


class CapacityChange(_Model):
    """At `at_s`, `host`'s capacity becomes `capacity_factor` times its configured capacity."""

    at_s: NonNegative
    host: str
    capacity_factor: Positive


class Scenario(_Model):
    name: str
    description: str = ""
    seed: int = 1
    #: Jobs arrive during [0, duration_s); the run goes on for `drain_s` to let queues empty.
    duration_s: Positive
    drain_s: NonNegative = 30.0
    job_types: dict[str, JobType] = Field(min_length=1)
    hosts: list[HostGroup] = Field(min_length=1)
    channel: Channel = Channel()
    #: Required unless every submitter has arrivals of its own.
    arrivals: Arrivals | None = None
    submitters: list[Submitter] = Field(default_factory=list)
    telemetry: Telemetry = Telemetry()
    dispatcher: Dispatcher = Dispatcher()
    events: list[CapacityChange] = Field(default_factory=list)
    #: Policies run when none are named on the command line (the oracle included).
    policies: list[str] = Field(default_factory=lambda: list(DEFAULT_SIM_POLICIES))
    #: io-aware's strictness sweep (`hold_s` values, `inf` allowed) for the trade-off plot.
    hold_sweep_s: list[float] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, math.inf]
    )
    #: Hosts whose I/O is recorded over time for the plots (all of them up to this many).
    plot_hosts: int = Field(16, ge=0)

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        for i, group in enumerate(self.hosts):
            for job_type in group.vms:
                if job_type not in self.job_types:
                    raise ValueError(f"hosts.{i}.vms: unknown job type {job_type!r}")
        ids = set(self.host_ids())
        for i, event in enumerate(self.events):
            if event.host not in ids:
                raise ValueError(f"events.{i}.host: unknown host {event.host!r}")
        for i, outage in enumerate(self.telemetry.outages):
            for host_id in outage.hosts:
                if host_id not in ids:
                    raise ValueError(f"telemetry.outages.{i}.hosts: unknown host {host_id!r}")
        unknown = [name for name in self.policies if name not in SIM_POLICY_NAMES]
        if unknown:
            raise ValueError(f"policies: unknown {unknown}; valid: {', '.join(SIM_POLICY_NAMES)}")
        self._check_submitters()
        return self

    def _check_submitters(self) -> None:
        names = [submitter.name for submitter in self.submitters]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"submitters: each name once; repeated: {', '.join(twice)}")
        for i, submitter in enumerate(self.submitters):
            for job_type in submitter.job_types or {}:
                if job_type not in self.job_types:
                    raise ValueError(f"submitters.{i}.job_types: unknown job type {job_type!r}")
        sharing = [s for s in self.submitters if s.share is not None]
        if self.arrivals is None and (sharing or not self.submitters):
            raise ValueError("arrivals: required (unless every submitter has arrivals of its own)")
        if self.arrivals is not None and self.submitters and not sharing:
            raise ValueError(
                "arrivals: no submitter takes a share of them; give submitters a share, "
                "or drop the scenario's arrivals"
            )
        total = sum(s.share or 0.0 for s in sharing)
        if sharing and not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"submitters: the shares of the arrivals add up to {total:g}, not 1")

    def host_ids(self) -> list[str]:
        """Host ids in order: h000, h001, ... (wider when there are more hosts)."""
        total = sum(group.count for group in self.hosts)
        width = max(3, len(str(total - 1)))
        return [f"h{i:0{width}d}" for i in range(total)]

    def fleet_capacity_ops_per_s(self) -> float:
        return sum(group.count * group.capacity_ops_per_s for group in self.hosts)

    def job_type_weights(self, submitter: Submitter | None = None) -> dict[str, float]:
        """The mix of job types (name -> weight) of `submitter`'s jobs, or of all jobs."""
        if submitter is not None and submitter.job_types is not None:
            return dict(submitter.job_types)
        return {name: spec.weight for name, spec in self.job_types.items()}

    def mean_io_per_job(self, weights: Mapping[str, float] | None = None) -> float:
        mix = weights if weights is not None else self.job_type_weights()
        total_weight = sum(mix.values())
        return sum(w * self.job_types[name].io_ops for name, w in mix.items()) / total_weight

    def base_rate_per_s(
        self, arrivals: Arrivals | None = None, weights: Mapping[str, float] | None = None
    ) -> float:
        """Jobs per second of `arrivals` (default: the scenario's), whose jobs mix `weights`."""
        arrivals = arrivals if arrivals is not None else self.arrivals
        assert arrivals is not None
        if arrivals.rate_per_s is not None:
            return arrivals.rate_per_s
        assert arrivals.offered_load is not None
        mean_io = self.mean_io_per_job(weights)
        if mean_io == 0:
            raise ConfigError(f"scenario {self.name}: offered_load needs job types with io_ops > 0")
        return arrivals.offered_load * self.fleet_capacity_ops_per_s() / mean_io


def parse_scenario(data: object, source: str) -> Scenario:
    if not isinstance(data, dict):
        raise ConfigError(f"scenario {source}: expected a mapping at the top level")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(f"scenario {source}", exc)) from None


def available_scenarios() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by name (from benchmarks/scenarios) or by the path of a YAML file."""
    path = Path(name_or_path)
    if not path.is_file():
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"scenario {str(name_or_path)!r}: no such file or name; "
            f"known names: {', '.join(available_scenarios())}"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {path}: not valid YAML: {exc}") from None
    return parse_scenario(data, str(path))
