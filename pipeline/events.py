"""Every event on every vmlb topic: one typed, versioned, validated schema each.

Events travel as one JSON object per Kafka message (UTF-8). Each carries `schema_version`; a
reader accepts the versions it knows and refuses others with a clear reason, which the pipeline
turns into a dead letter. Times are Unix epoch seconds (float, UTC); rates carry their unit in the
name (`_per_s`); I/O counts are in I/O requests (`_ops`).

`JobSubmission` is a public interface: any Kafka client in any language submits a job by producing
one JSON line to the jobs topic (see docs/events.md). Everything else is written by vmlb itself.

This module owns the wire format only; it must not import Kafka or Faust.
"""

from __future__ import annotations

import json
import math
import uuid
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import EventError

SCHEMA_VERSION = 1

#: Identifiers for hosts, VMs and job types: what libvirt domain names and topic names allow.
Identifier = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
EpochSeconds = Annotated[float, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]


class Event(BaseModel):
    """Base of every event: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The topic key this event is written under (documentation and `key()`).
    key_field: ClassVar[str | None] = None

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    def key(self) -> bytes | None:
        if self.key_field is None:
            return None
        return str(getattr(self, self.key_field)).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> Self:
        """Parse and validate one message value; raise EventError naming the bad field."""
        if raw is None:
            raise EventError(f"{cls.__name__}: empty message (no value)")
        try:  # the fast path (pydantic parses the JSON itself); errors are described below
            return cls.model_validate_json(raw)
        except ValidationError:
            pass
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EventError(f"{cls.__name__}: not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        if not isinstance(data, dict):
            raise EventError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise EventError(describe_validation_error(cls.__name__, exc)) from None


def describe_validation_error(what: str, exc: ValidationError) -> str:
    """One line naming each bad field, e.g. `JobSubmission: job_type: field required`."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(message)"
        problems.append(f"{field}: {error['msg']}")
    return f"{what}: " + "; ".join(problems)


# --- Telemetry (Dom0) --------------------------------------------------------------------------


class IoCounters(BaseModel):
    """A VM's cumulative I/O request counters as the host sees them (never reset by vmlb).

    The modern stand-in for the paper's page flips (`mp_exchange`): every packet and every block
    request a guest issues crosses the host's I/O path.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    net_rx_packets: int = Field(0, ge=0)
    net_tx_packets: int = Field(0, ge=0)
    block_rd_reqs: int = Field(0, ge=0)
    block_wr_reqs: int = Field(0, ge=0)

    @property
    def total_ops(self) -> int:
        return self.net_rx_packets + self.net_tx_packets + self.block_rd_reqs + self.block_wr_reqs


class IoSample(Event):
    """One VM's I/O over one sampling interval, measured from the host (topic: io-samples).

    `io_ops` is the delta of `counters.total_ops` over `interval_s`, computed by the Dom0 producer,
    which handles counter resets (a reset never yields a negative delta).
    """

    key_field: ClassVar[str | None] = "vm_id"

    host_id: Identifier
    vm_id: Identifier
    sampled_at: EpochSeconds
    interval_s: float = Field(gt=0)
    io_ops: int = Field(ge=0)
    counters: IoCounters

    @property
    def io_ops_per_s(self) -> float:
        return self.io_ops / self.interval_s

    @property
    def interval_index(self) -> int:
        """Which sampling interval this is (sampled_at / interval_s, rounded half up), so that
        samples of a host's VMs taken in the same tick sum together. Not round(): its
        half-to-even would put two consecutive ticks sampled at half an interval into one."""
        return math.floor(self.sampled_at / self.interval_s + 0.5)


# --- Registries (compacted) --------------------------------------------------------------------


class HostStatus(StrEnum):
    UP = "up"
    DOWN = "down"


class HostRegistration(Event):
    """A physical host and its configured I/O limit, if any (topic: hosts, compacted)."""

    key_field: ClassVar[str | None] = "host_id"

    host_id: Identifier
    status: HostStatus = HostStatus.UP
    io_limit_ops_per_s: float | None = Field(None, gt=0)
    sample_interval_s: float = Field(1.0, gt=0)
    #: How Dom0 reads this host's counters (libvirt: `bulk`, `bulk-per-domain` while a bulk
    #: call overruns, `per-device`; `emulated`), None while not known.
    telemetry_path: str | None = Field(None, max_length=64)
    registered_at: EpochSeconds


class VmStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    #: Still on its host but running no guest code (suspended): it serves no job.
    PAUSED = "paused"


class VmRegistration(Event):
    """Where a VM runs, the one job type it serves, and its queue topic (topic: vms, compacted).

    A migration is a new registration of the same `vm_id` with another `host_id`.
    """

    key_field: ClassVar[str | None] = "vm_id"

    vm_id: Identifier
    host_id: Identifier
    job_type: Identifier
    queue_topic: str = Field(min_length=1, max_length=249)
    status: VmStatus = VmStatus.RUNNING
    registered_at: EpochSeconds


# --- Derived per-VM state and limits (compacted) -------------------------------------------------


class VmState(Event):
    """What the pipeline measured of one VM, the paper's steps 2 and 3 (topic: vm-state).

    Written by the vm_stats agent, which owns the VM's partition; read by every dispatcher.
    `load_jobs_per_s` is Eq. 1 (jobs completed per second over the load window);
    `io_per_job` is Table 2, kept current (None until enough jobs were seen);
    `outstanding_jobs` counts jobs dispatched to the VM and not yet completed;
    `last_decision_at` is the newest dispatch the count includes, so a dispatcher can tell which
    of its own recent placements the count does not yet reflect.
    """

    key_field: ClassVar[str | None] = "vm_id"

    vm_id: Identifier
    host_id: Identifier | None = None
    io_ops_per_s: NonNegative = 0.0
    load_jobs_per_s: NonNegative = 0.0
    io_per_job: NonNegative | None = None
    io_per_job_samples: int = Field(0, ge=0)
    busy_fraction: float = Field(0.0, ge=0, le=1)
    outstanding_jobs: int = Field(0, ge=0)
    last_telemetry_at: EpochSeconds | None = None
    last_completion_at: EpochSeconds | None = None
    last_decision_at: EpochSeconds | None = None
    updated_at: EpochSeconds


class LimitScope(StrEnum):
    HOST = "host"
    VM = "vm"


class LimitField(StrEnum):
    IO_LIMIT = "io_limit_ops_per_s"  # a host's I/O limit (Table 1)
    IO_PER_JOB = "io_per_job"  # a VM's I/O per job (Table 2)


class LimitSource(StrEnum):
    OPERATOR = "operator"  # `vmlb limit set`: wins over everything
    CALIBRATED = "calibrated"  # `vmlb calibrate`


class LimitSetting(Event):
    """A host limit or a VM's io_per_job, measured or set by an operator (topic: limits).

    Keyed `<scope>/<target_id>/<field>/<source>`, so a measurement never overwrites an operator's
    override; `value: null` clears a setting. `detail` says how a measurement was taken.
    """

    scope: LimitScope
    target_id: Identifier
    field: LimitField
    source: LimitSource
    value: float | None = Field(None, gt=0)
    set_at: EpochSeconds
    detail: str | None = None

    def key(self) -> bytes | None:
        return limit_key(self.scope, self.target_id, self.field, self.source).encode()


def limit_key(scope: LimitScope, target_id: str, field: LimitField, source: LimitSource) -> str:
    """The `limits` topic key of one setting: `<scope>/<target_id>/<field>/<source>`."""
    return f"{scope}/{target_id}/{field}/{source}"


# --- Jobs ---------------------------------------------------------------------------------------


class JobSubmission(Event):
    """A job to run (topic: jobs). The public submission format.

    Only `job_type` is required. `job_id` makes resubmission idempotent; without one, the
    dispatcher derives a stable id from the message's topic, partition and offset.
    `deadline_s` counts from `submitted_at`: a job still waiting then is dead-lettered.
    """

    key_field: ClassVar[str | None] = "job_id"

    job_id: Identifier | None = None
    job_type: Identifier
    payload: dict[str, Any] = Field(default_factory=dict)
    submitted_at: EpochSeconds | None = None
    deadline_s: float | None = Field(None, gt=0)

    def key(self) -> bytes | None:
        return self.job_id.encode() if self.job_id else None

    @property
    def deadline_at(self) -> float | None:
        if self.deadline_s is None or self.submitted_at is None:
            return None
        return self.submitted_at + self.deadline_s


def new_job_id() -> str:
    return uuid.uuid4().hex


class QueuedJob(Event):
    """A job routed to one VM (topic: that VM's queue). Written by the dispatcher only."""

    key_field: ClassVar[str | None] = "job_id"

    job_id: Identifier
    job_type: Identifier
    payload: dict[str, Any] = Field(default_factory=dict)
    vm_id: Identifier
    host_id: Identifier
    submitted_at: EpochSeconds
    dispatched_at: EpochSeconds
    deadline_at: EpochSeconds | None = None
    policy: str


class JobOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobCompletion(Event):
    """A job a guest finished, with its whole timeline (topic: completions, key vm_id)."""

    key_field: ClassVar[str | None] = "vm_id"

    job_id: Identifier
    job_type: Identifier
    vm_id: Identifier
    host_id: Identifier
    submitted_at: EpochSeconds
    dispatched_at: EpochSeconds
    started_at: EpochSeconds
    finished_at: EpochSeconds
    outcome: JobOutcome
    error: str | None = None

    @model_validator(mode="after")
    def _timeline_in_order(self) -> Self:
        if not self.started_at <= self.finished_at:
            raise ValueError("finished_at is before started_at")
        if self.outcome is JobOutcome.FAILED and not self.error:
            raise ValueError("a failed job needs an error text")
        return self

    @property
    def response_s(self) -> float:
        """Submit-to-finish time: what the submitter experiences."""
        return self.finished_at - self.submitted_at

    @property
    def service_s(self) -> float:
        return self.finished_at - self.started_at


# --- Decisions ----------------------------------------------------------------------------------


class DecisionOutcome(StrEnum):
    DISPATCHED = "dispatched"
    WAITING = "waiting"  # no eligible host; the job waits durably
    EXPIRED = "expired"  # its deadline passed while waiting; dead-lettered
    REJECTED = "rejected"  # no VM serves its type; dead-lettered


class CandidateView(BaseModel):
    """What the dispatcher knew of one candidate when it decided (the policies build these).

    Fields that may be unknown default to None, so a record written without them (`to_bytes()`
    leaves out None) reads back as it was written.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vm_id: str
    host_id: str
    #: The host's I/O rate as the policy estimates it (paper total, or projected).
    total_io_ops_per_s: float
    eligible: bool
    limit_ops_per_s: float | None = None
    headroom_ops_per_s: float | None = None
    #: Reported outstanding jobs plus this dispatcher's claims.
    outstanding_jobs: int = 0
    telemetry_age_s: float | None = None
    #: How far the host's telemetry was behind the fleet's newest (absent in older records).
    telemetry_behind_s: float | None = None
    #: Name of the filter that rejected it (None if eligible).
    rejected_by: str | None = None
    #: The weighers' combined score (None if not weighed).
    weight: float | None = None


class DispatchDecision(Event):
    """Everything one dispatch decision used and chose (topic: decisions, key vm_id or job_id)."""

    job_id: Identifier
    job_type: Identifier
    decided_at: EpochSeconds
    policy: str
    outcome: DecisionOutcome
    vm_id: str | None = None
    host_id: str | None = None
    reason: str
    candidates: list[CandidateView] = Field(default_factory=list)
    attempt: int = Field(1, ge=1)

    def key(self) -> bytes | None:
        # Keyed by the chosen VM so that decisions are co-partitioned with that VM's completions
        # and telemetry: one worker counts the VM's outstanding jobs.
        return (self.vm_id or self.job_id).encode()


# --- Dead letters -------------------------------------------------------------------------------


class DeadLetter(Event):
    """A message vmlb could not use, with the reason (topic: dead-letters).

    `payload` holds the original value as text (UTF-8, or `base64:`-prefixed when it was not);
    the original topic, partition and offset let an operator find and replay it.
    """

    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    source_key: str | None = None
    payload: str | None = None
    reason: str
    stage: str
    dead_lettered_at: EpochSeconds
    job_id: str | None = None

    def key(self) -> bytes | None:
        return self.source_key.encode() if self.source_key else None

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        value: bytes | None,
        *,
        reason: str,
        stage: str,
        at: float,
        job_id: str | None = None,
    ) -> DeadLetter:
        """The dead letter of one message as it came off (or was meant for) `topic`."""
        return cls(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            source_key=payload_text(key),
            payload=payload_text(value),
            reason=reason,
            stage=stage,
            dead_lettered_at=at,
            job_id=job_id,
        )


def payload_text(raw: bytes | None) -> str | None:
    """A raw message value as text for a dead letter, never failing."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        import base64

        return "base64:" + base64.b64encode(raw).decode()


#: Every schema, by the name used in docs/events.md and tests.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        IoSample,
        HostRegistration,
        VmRegistration,
        JobSubmission,
        QueuedJob,
        JobCompletion,
        DispatchDecision,
        DeadLetter,
        VmState,
        LimitSetting,
    )
}

E = TypeVar("E", bound=Event)
