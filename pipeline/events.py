"""Every event on every vmlb topic: one typed, versioned, validated schema each.

Events travel as one JSON object per Kafka message (UTF-8). Each carries `schema_version`; a
reader accepts the versions it knows and refuses others with a clear reason, which the pipeline
turns into a dead letter. Times are Unix epoch seconds (float, UTC); rates carry their unit in the
name (`_per_s`); I/O counts are in I/O requests (`_ops`).

`JobSubmission` and `JobControl` are public interfaces: any Kafka client in any language submits
(or cancels) a job by producing one JSON line (see docs/events.md), and follows it on the
compacted `job-status` topic (`JobStatus`). Everything else is written by vmlb itself.

Decoding is total: any bytes give an event or an `EventError` naming the field. Numbers are
strict (no numeric strings, no `true` for a count), finite and bounded (`Count`, `Rate`,
`EpochSeconds`: before 2100), identifiers are checked against a pattern, and a
message larger than `MAX_MESSAGE_BYTES` is refused before it is parsed. JSON nesting is bounded
by pydantic-core's parser (it refuses, never recurses in Python).

This module owns the wire format only; it must not import Kafka or Faust.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import math
import types
import typing
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import from_json, to_json

from pipeline.errors import EventError

SCHEMA_VERSION = 1

#: No vmlb message may be larger (Kafka's default max.message.bytes is 1,048,588).
MAX_MESSAGE_BYTES = 1_000_000
#: A job's result travels in its JobStatus; a larger one is refused (return a reference instead).
MAX_RESULT_BYTES = 64 * 1024
#: A job's payload travels in its queued job and in each of its status records (which also
#: carry a result and errors); a larger one is refused: pass a reference to the data instead.
MAX_PAYLOAD_BYTES = 256 * 1024
#: Free-text fields (reasons, errors) are cut to this many characters.
MAX_TEXT = 2000

#: Identifiers for hosts, VMs and job types: what libvirt domain names and topic names allow.
Identifier = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
#: Unix time up to 2100-01-01: finite and bounded. How far from the receiver's own clock an
#: event may be is judged where that clock is (the dispatcher, the vm_stats agent).
EpochSeconds = Annotated[float, Strict(), Field(ge=0, le=4_102_444_800, allow_inf_nan=False)]
#: A duration or interval in seconds (at most ten years).
Seconds = Annotated[float, Strict(), Field(ge=0, le=315_360_000, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Strict(), Field(gt=0, le=315_360_000, allow_inf_nan=False)]
#: A rate (ops/s, jobs/s): finite, non-negative, below any physical I/O path (10^12 per second).
Rate = Annotated[float, Strict(), Field(ge=0, le=1e12, allow_inf_nan=False)]
PositiveRate = Annotated[float, Strict(), Field(gt=0, le=1e12, allow_inf_nan=False)]
#: A count (I/O requests, jobs): an integer, never a float or a boolean, below 2^53.
Count = Annotated[int, Strict(), Field(ge=0, le=2**53)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
NonNegative = Rate


M = TypeVar("M", bound=BaseModel)

#: Immutable default values, shared safely between instances (anything else is copied).
_SHARED_DEFAULTS = (type(None), bool, int, float, str, bytes, tuple, frozenset, StrEnum)


def trusted(model: type[M], **values: Any) -> M:
    """`model.model_construct(**values)` for values this code built itself (not validated), at
    a fraction of its cost. Only field names are accepted (no aliases, nothing extra).

    The workaround, in this one place, for pydantic 2.14's `model_construct`: it resolves each
    missing field's default in Python at every call and, for a default factory, runs
    `inspect.signature` on it every time (`FieldInfo.default_factory_takes_validated_data` is
    not cached; for `list` and `dict` that parses their text signature with `ast`). It was 30 %
    of the worker's time at full load; pydantic#13376 is the same defect for private attributes.
    Here the defaults of a class are resolved once (`_defaults_of`) and the instance is set up
    as `model_construct` sets it up (fields in their order, fields set, no extra, no private
    attributes): a copy of the class's defaults, updated with the values, then each default
    that must be made afresh (a factory's, a mutable one's copy, or a missing required field's
    error).
    """
    template, factories, required = _defaults_of(model)
    state = template.copy()
    state.update(values)
    if len(state) != len(template):
        unknown = values.keys() - template.keys()
        raise TypeError(f"{model.__name__} has no field(s) {sorted(unknown)}")
    if not required <= values.keys():
        name = next(name for name in template if name in required and name not in values)
        raise TypeError(f"{model.__name__}: required field {name!r} not given")
    for name, factory in factories.items():
        if name not in values:
            state[name] = factory()
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", state)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def trusted_bytes(model: type[Event], **values: Any) -> bytes:
    """`trusted(model, **values).to_bytes()`, without the instance: the JSON of the fields in
    their order, None left out. For events whose fields hold plain JSON values (str, int,
    float, bool, None; no nested model, enum or list: TypeError otherwise), such as `VmState`,
    which the vm_stats agent publishes for every VM sample."""
    template, _, required = _defaults_of(model)
    if model not in _PLAIN_EVENTS:
        if not _plain(model):
            raise TypeError(f"{model.__name__}: trusted_bytes() takes plain fields only")
        _PLAIN_EVENTS.add(model)
    state = template.copy()
    state.update(values)
    if len(state) != len(template) or not required <= values.keys():
        return trusted(model, **values).to_bytes()  # raises the reason
    return to_json({name: value for name, value in state.items() if value is not None})


_PLAIN_EVENTS: set[type[BaseModel]] = set()
_PLAIN_TYPES = (str, int, float, bool, type(None))


def _plain(model: type[BaseModel]) -> bool:
    _, factories, _ = _defaults_of(model)
    return not factories and all(_plain_type(f.annotation) for f in model.model_fields.values())


def _plain_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _plain_type(typing.get_args(annotation)[0])
    if origin in _UNIONS:
        return all(_plain_type(option) for option in typing.get_args(annotation))
    if origin is Literal:
        return all(isinstance(v, _PLAIN_TYPES) for v in typing.get_args(annotation))
    return annotation in _PLAIN_TYPES


_UNIONS = (typing.Union, types.UnionType)


_FACTORY = object()
_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], dict[str, Any], frozenset[str]]] = {}


def _defaults_of(
    model: type[BaseModel],
) -> tuple[dict[str, Any], dict[str, Any], frozenset[str]]:
    """(field name -> default, or `_FACTORY`), (field name -> factory), the required fields'
    names; in field order, once per class. A required field has no default: leaving it out
    is the caller's error."""
    found = _DEFAULTS.get(model)
    if found is None:
        if model.__pydantic_post_init__ is not None or model.__private_attributes__:
            raise TypeError(f"{model.__name__}: trusted() does not run post-init or private state")
        fields: dict[str, Any] = {}
        factories: dict[str, Any] = {}
        required: set[str] = set()
        for name, info in model.model_fields.items():
            if info.default_factory is not None:
                if info.default_factory_takes_validated_data:
                    raise TypeError(f"{model.__name__}.{name}: a factory of validated data")
                fields[name], factories[name] = _FACTORY, info.default_factory
            elif info.is_required():
                fields[name] = _FACTORY
                required.add(name)
            elif isinstance(info.default, _SHARED_DEFAULTS):
                fields[name] = info.default
            else:
                default = info.default
                fields[name], factories[name] = (
                    _FACTORY,
                    lambda default=default: copy.deepcopy(default),
                )
        found = _DEFAULTS[model] = (fields, factories, frozenset(required))
    return found


class Event(BaseModel):
    """Base of every event: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The topic key this event is written under (documentation and `key()`).
    key_field: ClassVar[str | None] = None

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        # `model_dump_json(exclude_none=True).encode()`, without its Python wrapper (keyword
        # handling, a str decoded only to be encoded again): the same bytes.
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)

    def key(self) -> bytes | None:
        if self.key_field is None:
            return None
        return str(getattr(self, self.key_field)).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> Self:
        """Parse and validate one message value; raise EventError naming the bad field.

        Total: whatever the bytes, the result is an event or an EventError (never another
        exception). pydantic-core parses the JSON (in Rust, with a nesting limit), so a deeply
        nested value is refused rather than recursed into.
        """
        if raw is None:
            raise EventError(f"{cls.__name__}: empty message (no value)")
        if len(raw) > MAX_MESSAGE_BYTES:
            raise EventError(
                f"{cls.__name__}: message of {len(raw)} bytes is over the {MAX_MESSAGE_BYTES} limit"
            )
        try:  # the fast path (pydantic parses the JSON itself); errors are described below
            return cls.model_validate_json(raw)
        except ValidationError:
            pass
        except Exception as exc:  # a validator's bug must not escape as anything else
            raise EventError(f"{cls.__name__}: {type(exc).__name__}: {exc}") from None
        try:
            data = from_json(raw)
        except ValueError as exc:
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
        except Exception as exc:
            raise EventError(f"{cls.__name__}: {type(exc).__name__}: {exc}") from None


def describe_validation_error(what: str, exc: ValidationError) -> str:
    """One line naming each bad field, e.g. `JobSubmission: job_type: field required`."""
    problems = []
    for error in exc.errors()[:10]:
        field = ".".join(str(part) for part in error["loc"])[:200] or "(message)"
        problems.append(f"{field}: {error['msg']}")
    return (f"{what}: " + "; ".join(problems))[:MAX_TEXT]


# --- Telemetry (Dom0) --------------------------------------------------------------------------


class IoCounters(BaseModel):
    """A VM's cumulative I/O request counters as the host sees them (never reset by vmlb).

    The modern stand-in for the paper's page flips (`mp_exchange`): every packet and every block
    request a guest issues crosses the host's I/O path.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    net_rx_packets: Count = 0
    net_tx_packets: Count = 0
    block_rd_reqs: Count = 0
    block_wr_reqs: Count = 0

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
    interval_s: PositiveSeconds
    io_ops: Count
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


#: A HostSample carries at most this many VMs (a larger host is split into several records):
#: with 200-character ids and 16-digit counters, 1,000 entries stay well under
#: `MAX_MESSAGE_BYTES`.
MAX_HOST_SAMPLE_VMS = 1000


class VmIo(BaseModel):
    """One VM's entry in a `HostSample`: an `IoSample` without the host and the time, which
    the record gives once for all its VMs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vm_id: Identifier
    interval_s: PositiveSeconds
    io_ops: Count
    counters: IoCounters


class HostSample(Event):
    """Every VM of one host over one sampling interval, in one record (topic: io-samples).

    What a Dom0 publishes instead of one `IoSample` per VM: `samples()` gives exactly the
    IoSamples it stands for. Keyed by `host_id`, but written to the io-samples partition of its
    VMs (Kafka's default partitioner of each `vm_id`), so everything about a VM still meets
    its completions in one partition: a host's VMs are grouped by partition, one record per
    group (and at most `MAX_HOST_SAMPLE_VMS` VMs each). The vm_stats agent refuses an entry
    whose VM belongs to another partition.
    """

    key_field: ClassVar[str | None] = "host_id"

    host_id: Identifier
    sampled_at: EpochSeconds
    vms: list[VmIo] = Field(min_length=1, max_length=MAX_HOST_SAMPLE_VMS)

    @model_validator(mode="after")
    def _one_entry_per_vm(self) -> Self:
        if len({vm.vm_id for vm in self.vms}) != len(self.vms):
            raise ValueError("a VM appears more than once in vms")
        return self

    def samples(self) -> list[IoSample]:
        """The per-VM IoSamples this record carries (already validated: not checked again)."""
        return [_io_sample(self.host_id, self.sampled_at, vm) for vm in self.vms]

    @classmethod
    def of(cls, samples: list[IoSample]) -> HostSample:
        """The record of samples taken by one host at one time (ValueError otherwise)."""
        if not samples:
            raise ValueError("a HostSample needs at least one sample")
        first = samples[0]
        if any(s.host_id != first.host_id or s.sampled_at != first.sampled_at for s in samples):
            raise ValueError("a HostSample's samples share one host_id and one sampled_at")
        return cls(
            host_id=first.host_id,
            sampled_at=first.sampled_at,
            vms=[
                VmIo(vm_id=s.vm_id, interval_s=s.interval_s, io_ops=s.io_ops, counters=s.counters)
                for s in samples
            ],
        )


def _io_sample(host_id: str, sampled_at: float, vm: VmIo) -> IoSample:
    return trusted(
        IoSample,
        schema_version=SCHEMA_VERSION,
        host_id=host_id,
        vm_id=vm.vm_id,
        sampled_at=sampled_at,
        interval_s=vm.interval_s,
        io_ops=vm.io_ops,
        counters=vm.counters,
    )


class _HostSampleEnvelope(Event):
    """A HostSample with its entries unread: what must be valid before any entry counts."""

    host_id: Identifier
    sampled_at: EpochSeconds
    vms: list[Any] = Field(min_length=1, max_length=MAX_HOST_SAMPLE_VMS)


@dataclass(frozen=True)
class TelemetryReading:
    """What one io-samples message gave: the VM samples that are valid, and why any VM entry
    was refused (`refused`, each naming its entry). An `IoSample` is one sample, never partly
    refused; a `HostSample` (`host_sample`) may have good and bad entries.

    A HostSample's valid entries are kept as they were validated (`vms`, with the record's
    `host_id` and `sampled_at`); `samples` builds their IoSamples when first asked (the
    vm_stats agent reads `vms`: an IoSample per entry cost more than validating it)."""

    #: An IoSample's sample (None for a HostSample).
    sample: IoSample | None
    #: A HostSample's valid entries, in order (empty for an IoSample).
    vms: Sequence[VmIo] = ()
    refused: tuple[str, ...] = ()
    #: A HostSample's host and time (None for an IoSample).
    host_id: str | None = None
    sampled_at: float | None = None

    @functools.cached_property
    def samples(self) -> list[IoSample]:
        if self.sample is not None:
            return [self.sample]
        assert self.host_id is not None and self.sampled_at is not None
        return [_io_sample(self.host_id, self.sampled_at, vm) for vm in self.vms]

    @property
    def host_sample(self) -> bool:
        return self.host_id is not None

    @property
    def entries(self) -> int:
        return (1 if self.sample is not None else len(self.vms)) + len(self.refused)


def read_telemetry(raw: bytes | str | None) -> TelemetryReading:
    """Decode one io-samples message, either form; total (EventError for an unusable message).

    An `IoSample` is valid or refused whole. A `HostSample` whose envelope (`host_id`,
    `sampled_at`, `schema_version`, a list of at most `MAX_HOST_SAMPLE_VMS` entries, no unknown
    field) is invalid is refused whole; otherwise each VM entry is judged on its own: a bad or
    repeated one is listed in `refused` and the others stand. A message is a HostSample when
    it is a JSON object with a `vms` field.
    """
    if raw is None or len(raw) > MAX_MESSAGE_BYTES:
        IoSample.from_bytes(raw)  # raises the reason
    data = raw.encode() if isinstance(raw, str) else raw
    if _HOST_SAMPLE_MARK in data:
        try:  # the fast path: the whole record valid (pydantic parses and checks in Rust)
            record = HostSample.model_validate_json(data)
            return TelemetryReading(None, record.vms, (), record.host_id, record.sampled_at)
        except ValidationError:
            pass
        except Exception as exc:
            raise EventError(f"HostSample: {type(exc).__name__}: {exc}") from None
    else:
        try:
            return TelemetryReading(IoSample.model_validate_json(data))
        except ValidationError:
            pass
        except Exception as exc:
            raise EventError(f"IoSample: {type(exc).__name__}: {exc}") from None
    try:
        parsed = from_json(data)
    except ValueError as exc:
        what = "HostSample" if _HOST_SAMPLE_MARK in data else "IoSample"
        raise EventError(f"{what}: not JSON: {exc}") from None
    if not isinstance(parsed, dict) or "vms" not in parsed:
        return TelemetryReading(IoSample.from_dict(parsed))
    return _read_host_sample(parsed)


_HOST_SAMPLE_MARK = b'"vms"'


def _read_host_sample(data: dict[str, Any]) -> TelemetryReading:
    try:
        envelope = _HostSampleEnvelope.model_validate(data)
    except ValidationError as exc:
        raise EventError(describe_validation_error("HostSample", exc)) from None
    except Exception as exc:
        raise EventError(f"HostSample: {type(exc).__name__}: {exc}") from None
    vms: list[VmIo] = []
    refused: list[str] = []
    first_at: dict[str, int] = {}
    for index, entry in enumerate(envelope.vms):
        try:
            vm = VmIo.model_validate(entry)
        except ValidationError as exc:
            refused.append(describe_validation_error(f"vms[{index}]{_named(entry)}", exc))
            continue
        except Exception as exc:
            refused.append(f"vms[{index}]: {type(exc).__name__}: {exc}"[:MAX_TEXT])
            continue
        if vm.vm_id in first_at:
            refused.append(
                f"vms[{index}] ({vm.vm_id}): repeated (first at vms[{first_at[vm.vm_id]}])"
            )
            continue
        first_at[vm.vm_id] = index
        vms.append(vm)
    return TelemetryReading(None, vms, tuple(refused), envelope.host_id, envelope.sampled_at)


def _named(entry: Any) -> str:
    vm_id = entry.get("vm_id") if isinstance(entry, dict) else None
    return f" ({vm_id[:200]})" if isinstance(vm_id, str) else ""


def read_io_samples(raw: bytes | str | None) -> list[IoSample]:
    """Every VM sample of one io-samples message, either form; EventError if any part of it
    is invalid (for readers that take a message whole: calibration, reports)."""
    reading = read_telemetry(raw)
    if reading.refused:
        raise EventError("HostSample: " + "; ".join(reading.refused)[:MAX_TEXT])
    return reading.samples


# --- Registries (compacted) --------------------------------------------------------------------


class HostStatus(StrEnum):
    UP = "up"
    DOWN = "down"


class HostRegistration(Event):
    """A physical host and its configured I/O limit, if any (topic: hosts, compacted)."""

    key_field: ClassVar[str | None] = "host_id"

    host_id: Identifier
    status: HostStatus = HostStatus.UP
    io_limit_ops_per_s: PositiveRate | None = None
    sample_interval_s: PositiveSeconds = 1.0
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
    io_ops_per_s: Rate = 0.0
    load_jobs_per_s: Rate = 0.0
    io_per_job: Rate | None = None
    io_per_job_samples: Count = 0
    busy_fraction: Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    outstanding_jobs: Count = 0
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
    value: PositiveRate | None = None
    set_at: EpochSeconds
    detail: Text | None = None

    def key(self) -> bytes | None:
        return limit_key(self.scope, self.target_id, self.field, self.source).encode()


def limit_key(scope: LimitScope, target_id: str, field: LimitField, source: LimitSource) -> str:
    """The `limits` topic key of one setting: `<scope>/<target_id>/<field>/<source>`."""
    return f"{scope}/{target_id}/{field}/{source}"


# --- Jobs ---------------------------------------------------------------------------------------

#: Job priorities: higher leaves the waiting queue first (as Celery's and Slurm's do).
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 9, 4
#: How many times a failed job may run in all (its first run included).
MAX_ATTEMPTS = 20


def _finite_json(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse Infinity and NaN anywhere in a free JSON value (a payload, a result): JSON has
    no such numbers, and pydantic-core reads them; re-encoded they would become null."""
    stack: list[Any] = [value]
    while stack:  # not recursive: nesting is bounded by the parser, but not by much
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (no Infinity or NaN)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _bounded_payload(payload: dict[str, Any]) -> dict[str, Any]:
    if payload and len(to_json_bytes(payload)) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is over the {MAX_PAYLOAD_BYTES}-byte limit")
    return payload


#: A job's payload: any JSON object of at most `MAX_PAYLOAD_BYTES`, handed to its handler as is.
Payload = Annotated[dict[str, Any], AfterValidator(_finite_json), AfterValidator(_bounded_payload)]


class JobSubmission(Event):
    """A job to run (topic: jobs). The public submission format.

    Only `job_type` is required. `job_id` makes resubmission idempotent; without one, the
    dispatcher derives a stable id from the message's topic, partition and offset.
    `deadline_s` counts from `submitted_at`: a job still waiting then expires (dead-lettered).
    `max_attempts` lets a failed job run again (with backoff, preferably on another VM);
    `priority` orders waiting jobs (higher first); `submitter` is the fairness key: under
    overload, waiting jobs of a type are taken round-robin across submitters.
    """

    key_field: ClassVar[str | None] = "job_id"

    job_id: Identifier | None = None
    job_type: Identifier
    payload: Payload = Field(default_factory=dict)
    submitted_at: EpochSeconds | None = None
    deadline_s: PositiveSeconds | None = None
    max_attempts: Annotated[int, Strict(), Field(ge=1, le=MAX_ATTEMPTS)] = 1
    priority: Annotated[int, Strict(), Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = DEFAULT_PRIORITY
    submitter: Identifier | None = None

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
    """A job routed to one VM (topic: that VM's queue). Written by the dispatcher only.

    `attempt` counts runs (1 for the first); `status_partition` is the partition of `job-status`
    (and of `jobs`) the job belongs to: the guest writes the job's status records there, where
    the dispatcher that owns the job reads them.
    """

    key_field: ClassVar[str | None] = "job_id"

    job_id: Identifier
    job_type: Identifier
    payload: Payload = Field(default_factory=dict)
    vm_id: Identifier
    host_id: Identifier
    submitted_at: EpochSeconds
    dispatched_at: EpochSeconds
    deadline_at: EpochSeconds | None = None
    policy: Text
    attempt: Annotated[int, Strict(), Field(ge=1, le=MAX_ATTEMPTS)] = 1
    status_partition: Annotated[int, Strict(), Field(ge=0, le=100_000)] | None = None
    max_attempts: Annotated[int, Strict(), Field(ge=1, le=MAX_ATTEMPTS)] = 1
    priority: Annotated[int, Strict(), Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = DEFAULT_PRIORITY
    submitter: Identifier | None = None
    deadline_s: PositiveSeconds | None = None
    #: The errors of its earlier attempts, oldest first (the guest reports them with a failure).
    errors: list[Text] = Field(default_factory=list, max_length=MAX_ATTEMPTS)

    def submission(self) -> JobSubmission:
        """The job as it was submitted (normalised: with its id and submission time)."""
        return JobSubmission(
            job_id=self.job_id,
            job_type=self.job_type,
            payload=self.payload,
            submitted_at=self.submitted_at,
            deadline_s=self.deadline_s,
            max_attempts=self.max_attempts,
            priority=self.priority,
            submitter=self.submitter,
        )


class JobOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobCompletion(Event):
    """A job run that finished, with its whole timeline (topic: completions, key vm_id).

    Written by the dispatcher once it has checked the guest's report against its own record
    (the job was dispatched to that VM, for that attempt, and not already finished), so the
    per-VM load and io_per_job the vm_stats agent keeps count only real runs.
    """

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
    error: Text | None = None
    attempt: Annotated[int, Strict(), Field(ge=1, le=MAX_ATTEMPTS)] = 1

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


# --- Job status (compacted) and control ----------------------------------------------------------


class JobState(StrEnum):
    WAITING = "waiting"  # no eligible host yet (reason and funnel say why), or backing off
    DISPATCHED = "dispatched"  # in a VM's queue, not started
    RUNNING = "running"  # a guest started it
    RETRYING = "retrying"  # an attempt failed; the next one comes at retry_at
    SUCCEEDED = "succeeded"  # with its result
    FAILED = "failed"  # the last attempt failed: dead-lettered with every attempt's error
    EXPIRED = "expired"  # its deadline passed before it ran: dead-lettered
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead-lettered"  # refused (no VM serves its type, ...): the reason says why

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.EXPIRED,
    JobState.CANCELLED,
    JobState.DEAD_LETTERED,
}


class StatusWriter(StrEnum):
    DISPATCHER = "dispatcher"
    GUEST = "guest"


class FunnelStep(BaseModel):
    """How many candidates were left after one rule (Nomad's and Nova's filter counts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Text
    remaining: Count


class JobStatus(Event):
    """Where one job is now (topic: job-status, compacted, key job_id).

    The latest record of a key is the job's state: any Kafka client can follow a job by its
    id. Records sit in the partition of `jobs` the job came from (the dispatcher that owns it
    reads them), written by the component that knows each transition: the dispatcher (waiting,
    dispatched, retrying, expired, cancelled, failed, dead-lettered) and the job's guest
    (running, succeeded, failed). `job` is the submission as normalised (its id, its time), so
    the latest record alone is enough to carry on with the job after a crash.
    """

    key_field: ClassVar[str | None] = "job_id"

    job_id: Identifier
    state: JobState
    at: EpochSeconds
    writer: StatusWriter
    job: JobSubmission
    attempt: Annotated[int, Strict(), Field(ge=1, le=MAX_ATTEMPTS)] = 1
    vm_id: Identifier | None = None
    host_id: Identifier | None = None
    dispatched_at: EpochSeconds | None = None
    started_at: EpochSeconds | None = None
    finished_at: EpochSeconds | None = None
    #: Why it waits, failed, expired, was cancelled or dead-lettered.
    reason: Text | None = None
    #: For a waiting job: the candidates left after each rule, e.g. type 16 -> fresh 12 -> 0.
    funnel: list[FunnelStep] = Field(default_factory=list, max_length=32)
    result: Annotated[dict[str, Any], AfterValidator(_finite_json)] | None = None
    error: Text | None = None
    #: A failed job's every attempt's error, oldest first.
    errors: list[Text] = Field(default_factory=list, max_length=MAX_ATTEMPTS)
    retry_at: EpochSeconds | None = None
    cancel_requested: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.job.job_id != self.job_id:
            raise ValueError(f"job.job_id {self.job.job_id!r} is not job_id {self.job_id!r}")
        if self.state in (JobState.DISPATCHED, JobState.RUNNING) and not self.vm_id:
            raise ValueError(f"a {self.state} job names its vm_id")
        if self.result is not None and len(to_json_bytes(self.result)) > MAX_RESULT_BYTES:
            raise ValueError(f"result is over the {MAX_RESULT_BYTES}-byte limit")
        return self

    @property
    def terminal(self) -> bool:
        return self.state.terminal


class ControlAction(StrEnum):
    CANCEL = "cancel"  # a submitter or operator: do not run (or stop) this job
    REVOKE = "revoke"  # the dispatcher: the job moved away from `vm_id`, which must not run it


class JobControl(Event):
    """A request about one job (topic: job-control, compacted, key job_id).

    `cancel` is public: any Kafka client may produce it (`vmlb job cancel` does). A waiting job
    is cancelled at once; a dispatched job that has not started is skipped by its guest; a
    running one is marked cancel-requested (its handler may honour it) and never completes as
    succeeded. `revoke` is written by the dispatcher when it moves a job off a VM.
    """

    key_field: ClassVar[str | None] = "job_id"

    job_id: Identifier
    action: ControlAction = ControlAction.CANCEL
    requested_at: EpochSeconds
    vm_id: Identifier | None = None
    reason: Text | None = None
    requested_by: Identifier | None = None

    @model_validator(mode="after")
    def _revoke_names_the_vm(self) -> Self:
        if self.action is ControlAction.REVOKE and not self.vm_id:
            raise ValueError("a revoke names the vm_id that must not run the job")
        return self


class HostMode(StrEnum):
    ACTIVE = "active"
    CORDONED = "cordoned"  # no new jobs; queued ones still run there
    DRAINING = "draining"  # no new jobs; queued, unstarted ones move elsewhere at deadline_at


class HostAdmin(Event):
    """An operator's say over one host (topic: host-admin, compacted, key host_id).

    Nomad's node drain and Nova's disabled service: `vmlb host cordon|drain|uncordon`.
    """

    key_field: ClassVar[str | None] = "host_id"

    host_id: Identifier
    mode: HostMode
    reason: Text | None = None
    deadline_at: EpochSeconds | None = None
    set_at: EpochSeconds


class DispatchLoad(Event):
    """One jobs partition's in-flight jobs per VM (topic: dispatch-load, compacted, key
    `partition`), from the dispatcher that owns the partition. Every dispatcher adds the
    partitions it does not own to its own exact counts, so several workers see one backlog."""

    partition: Annotated[int, Strict(), Field(ge=0, le=100_000)]
    in_flight: dict[Identifier, Count] = Field(default_factory=dict)
    at: EpochSeconds

    def key(self) -> bytes | None:
        return str(self.partition).encode()


# --- Decisions ----------------------------------------------------------------------------------


class DecisionOutcome(StrEnum):
    DISPATCHED = "dispatched"
    WAITING = "waiting"  # no eligible host; the job waits durably
    EXPIRED = "expired"  # its deadline passed while waiting; dead-lettered
    REJECTED = "rejected"  # no VM serves its type; dead-lettered
    CANCELLED = "cancelled"  # cancelled while waiting


_Finite = Annotated[float, Field(allow_inf_nan=False)]


class CandidateView(BaseModel):
    """What the dispatcher knew of one candidate when it decided (the policies build these).

    Fields that may be unknown default to None, so a record written without them (`to_bytes()`
    leaves out None) reads back as it was written.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vm_id: Identifier
    host_id: Identifier
    #: The host's I/O rate as the policy estimates it (paper total, or projected).
    total_io_ops_per_s: _Finite
    eligible: bool
    limit_ops_per_s: _Finite | None = None
    headroom_ops_per_s: _Finite | None = None
    #: Outstanding jobs: this dispatcher's own in flight plus the other dispatchers'.
    outstanding_jobs: Count = 0
    telemetry_age_s: _Finite | None = None
    #: How far the host's telemetry was behind the fleet's newest (absent in older records).
    telemetry_behind_s: _Finite | None = None
    #: Name of the filter that rejected it (None if eligible).
    rejected_by: Text | None = None
    #: The weighers' combined score (None if not weighed).
    weight: _Finite | None = None
    #: What the job would add to the host's I/O demand now: its rate on an idle VM, 0 behind a
    #: running job (io-aware's fit test; None where not judged).
    job_io_ops_per_s: _Finite | None = None
    #: Seconds until the job would be done on this VM, as the policy expected (None: not judged).
    expected_response_s: _Finite | None = None


class DispatchDecision(Event):
    """Everything one dispatch decision used and chose (topic: decisions, key job_id).

    Written to the partition of `jobs` the job came from, before the job is queued: a queued job
    always has its decision. `candidates` holds the compared (eligible) candidates in full and a
    few of the refused ones; `refused` counts every refused candidate by the rule that refused
    it. `attempt` is the job's run (1 for the first); `decision_count` counts decisions made for
    this attempt (a waiting job is decided again until it goes).
    """

    key_field: ClassVar[str | None] = "job_id"

    job_id: Identifier
    job_type: Identifier
    decided_at: EpochSeconds
    policy: Text
    outcome: DecisionOutcome
    vm_id: Identifier | None = None
    host_id: Identifier | None = None
    reason: Text
    candidates: list[CandidateView] = Field(default_factory=list, max_length=256)
    refused: dict[Text, Count] = Field(default_factory=dict)
    attempt: Annotated[int, Strict(), Field(ge=1, le=MAX_ATTEMPTS)] = 1
    decision_count: Annotated[int, Strict(), Field(ge=1)] = 1

    def to_bytes(self) -> bytes:
        """The same bytes as `Event.to_bytes`, with each candidate encoded once per instance:
        a candidate's record is shared by every decision that compares it (io-aware keeps a
        VM's verdict, record included, while its host is as it was), and at full load a
        decision compares 16, which were most of the cost of encoding it."""
        candidates = self.candidates
        if len(candidates) < _SPLICED_FROM or not all(type(c) is CandidateView for c in candidates):
            return super().to_bytes()
        rest = self.__pydantic_serializer__.to_json(
            self, exclude_none=True, exclude=_CANDIDATES_FIELD
        )
        # Where pydantic puts the list: before `refused` (no string holds an unescaped quote,
        # so the first match is the key).
        at = rest.find(b',"refused":')
        if at < 0:
            return super().to_bytes()
        encoded = b",".join([_candidate_json(c) for c in candidates])
        return b"".join((rest[:at], b',"candidates":[', encoded, b"]", rest[at:]))


_CANDIDATES_FIELD = frozenset({"candidates"})
#: Below this many candidates pydantic's one pass is cheaper than splicing kept ones in.
_SPLICED_FROM = 5
#: Each recorded candidate's JSON by instance (a frozen model: its bytes never change), with
#: the instance itself, so that its id is not reused while the entry stands. Cleared when full:
#: a candidate is recorded by the decisions of one snapshot, a fraction of a second.
_CANDIDATE_JSON: dict[int, tuple[CandidateView, bytes]] = {}
_CANDIDATE_JSON_MAX = 4096


def _candidate_json(view: CandidateView) -> bytes:
    found = _CANDIDATE_JSON.get(id(view))
    if found is not None and found[0] is view:
        return found[1]
    if len(_CANDIDATE_JSON) >= _CANDIDATE_JSON_MAX:
        _CANDIDATE_JSON.clear()
    encoded = CandidateView.__pydantic_serializer__.to_json(view, exclude_none=True)
    _CANDIDATE_JSON[id(view)] = (view, encoded)
    return encoded


# --- Dead letters -------------------------------------------------------------------------------

#: A dead letter keeps at most this much of the original message (the rest is summarised by its
#: size and digest), so a dead letter always fits where its original came from.
MAX_DEAD_PAYLOAD_BYTES = 64 * 1024


class DeadLetter(Event):
    """A message vmlb could not use, with the reason (topic: dead-letters).

    `payload` holds the original value as text (UTF-8, or `base64:`-prefixed when it was not),
    cut to `MAX_DEAD_PAYLOAD_BYTES`; `payload_bytes` and `payload_sha256` describe the whole
    original, so an operator can tell a truncated payload and find the original by its
    topic, partition and offset.
    """

    source_topic: Text
    source_partition: Annotated[int, Strict()] | None = None
    source_offset: Annotated[int, Strict()] | None = None
    source_key: Text | None = None
    payload: str | None = None
    payload_bytes: Count | None = None
    payload_sha256: str | None = None
    payload_truncated: bool = False
    reason: Text
    stage: Text
    dead_lettered_at: EpochSeconds
    job_id: Text | None = None

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
        """The dead letter of one message as it came off (or was meant for) `topic`.

        Never fails and never grows past its limits: the payload is cut, the key, the reason
        and the ids are cut to their field sizes.
        """
        truncated = value is not None and len(value) > MAX_DEAD_PAYLOAD_BYTES
        return trusted(
            cls,
            schema_version=SCHEMA_VERSION,
            source_topic=topic[:MAX_TEXT],
            source_partition=partition,
            source_offset=offset,
            source_key=_cut(payload_text(key[:MAX_TEXT] if key is not None else None)),
            payload=payload_text(value[:MAX_DEAD_PAYLOAD_BYTES] if value is not None else None),
            payload_bytes=None if value is None else len(value),
            payload_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
            payload_truncated=truncated,
            reason=reason[:MAX_TEXT],
            stage=stage[:MAX_TEXT],
            dead_lettered_at=at,
            job_id=_cut(job_id),
        )


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


def payload_text(raw: bytes | None) -> str | None:
    """A raw message value as text for a dead letter, never failing."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def to_json_bytes(value: Any) -> bytes:
    """Compact JSON of a plain value, as the wire has it (pydantic-core's encoder)."""
    from pydantic_core import to_json

    return to_json(value)


#: Every schema, by the name used in docs/events.md and tests.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        IoSample,
        HostSample,
        HostRegistration,
        VmRegistration,
        JobSubmission,
        QueuedJob,
        JobCompletion,
        JobStatus,
        JobControl,
        HostAdmin,
        DispatchLoad,
        DispatchDecision,
        DeadLetter,
        VmState,
        LimitSetting,
    )
}

E = TypeVar("E", bound=Event)
