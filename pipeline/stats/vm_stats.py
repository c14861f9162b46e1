"""Per-VM measurements: the paper's steps 2 and 3, kept current, as plain data.

One `VmStats` row per VM lives in the `vm_stats` table (RocksDB, changelog). Everything about a
VM arrives on the VM's own partition (I/O samples and completions are both keyed by vm_id),
so the row is updated by one agent without joins:

- I/O samples add their `io_ops` to an event-time bucketed window and move the VM to the host
  that sampled it (a migration needs nothing else);
- completions (forwarded by the dispatcher once checked) add to the job-count and busy-time
  windows (load, Eq. 1).

Jobs in flight are not counted here: each dispatcher counts its own exactly and publishes them
(`dispatch-load`, `pipeline.fleet.snapshots`).

Windows are `pipeline.stats.windows.SlidingWindow`s (event time, plain data): rates over
`rate_window_s`, `io_per_job` over `io_per_job_window_s`. The simulator keeps its VMs in these
same rows, so the live pipeline and the simulation aggregate identically.

`io_per_job` (Table 2) is re-estimated on every sample and completion as the ratio of windowed
sums, `Σ io_ops / Σ jobs` over its window, once the window holds at least `min_jobs`
completions; until then the last estimate stands. A ratio of sums over a sliding window follows
drift within one window and does not overweight a single odd job, which a mean of per-job ratios
would. Both sums end at the newest I/O sample: a completion travels on its own path and arrives
before the Dom0 sample that carries its I/O (a sample covers the interval before it), so the
jobs counted are those finished by then, from one bucket before the I/O window's first (whose
sample covers the interval before it). Counting every job so far would divide older I/O by newer
jobs: low by a second's jobs in a full window, by far more while the window is young.

Every input is idempotent: a re-delivered sample (not newer than the last one) or completion
(job id already seen) changes nothing. Inputs are
plain values (the agent unpacks events), time comes in as arguments; nothing here reads a clock
or touches Kafka.

Rows are versioned (`schema_version`); `from_dict` refuses a row it cannot read with a
`RowError` naming the field, and the agent then starts that VM's row afresh (logged, counted).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from pipeline.errors import RowError
from pipeline.events import SCHEMA_VERSION, VmState, describe_validation_error
from pipeline.stats.windows import SlidingWindow, WindowConfig

ROW_VERSION = 1

#: The row's windows: name -> which WindowConfig window it is.
_RATE_WINDOWS = ("io_ops", "jobs", "busy_s")
_LONG_WINDOWS = ("io_ops_long", "jobs_long")


class _StoredWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    window_s: float = Field(gt=0)
    bucket_s: float = Field(gt=0)
    buckets: dict[int, float] = Field(default_factory=dict)
    first_at: float | None = None
    latest_at: float | None = None


class _StoredRow(BaseModel):
    """What a stored row must look like; rows from before versioning read as version 1."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = ROW_VERSION
    vm_id: str
    host_id: str | None = None
    windows: dict[str, _StoredWindow] = Field(default_factory=dict)
    #: Rows written before the dispatcher counted in-flight jobs carry them; ignored.
    inflight: dict[str, float] = Field(default_factory=dict)
    completed: dict[str, float] = Field(default_factory=dict)
    io_per_job: float | None = Field(None, ge=0)
    io_per_job_samples: int = Field(0, ge=0)
    last_telemetry_at: float | None = None
    last_completion_at: float | None = None
    last_decision_at: float | None = None


#: A row's window names as JSON object member names (`"io_ops":`).
_MEMBER_NAMES = {name: to_json(name) + b":" for name in (*_RATE_WINDOWS, *_LONG_WINDOWS)}


@dataclass
class VmStats:
    """The `vm_stats` table row of one VM. Plain data: `to_dict()`/`from_dict()` round-trip."""

    vm_id: str
    config: WindowConfig = field(default_factory=WindowConfig, repr=False, compare=False)
    host_id: str | None = None
    windows: dict[str, SlidingWindow] = field(default_factory=dict)
    #: job_id -> finished_at (dedupe); changed only by `add_completion` and `_prune`.
    completed: dict[str, float] = field(default_factory=dict)
    io_per_job: float | None = None
    io_per_job_samples: int = 0
    last_telemetry_at: float | None = None
    last_completion_at: float | None = None
    #: When the dedupe and in-flight maps were last pruned (memory only: pruning is cheap to
    #: redo, and a pruned map is only smaller, so it need not survive a restore).
    pruned_at: float | None = field(default=None, repr=False, compare=False)
    #: The start of `to_json()` (up to the host, which a migration changes), kept.
    _head: tuple[str | None, bytes] | None = field(default=None, repr=False, compare=False)
    #: The JSON of `completed` until it next changes (`add_completion`, `_prune`): a row is
    #: rewritten for every sample, and a busy VM's map holds a minute of job ids.
    _completed_json: bytes | None = field(default=None, repr=False, compare=False)
    #: `completed`'s finish times, sorted (memory only: rebuilt from `completed` with the
    #: row), so the jobs `io_per_job` counts for each sample are two bisections, not a walk
    #: over a minute of job ids.
    _finished: list[float] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._finished = sorted(self.completed.values())
        for name in _RATE_WINDOWS:
            self.windows.setdefault(name, self.config.rate_window())
        for name in _LONG_WINDOWS:
            self.windows.setdefault(name, self.config.io_per_job_window())

    # --- plain data -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": ROW_VERSION,
            "vm_id": self.vm_id,
            "host_id": self.host_id,
            "windows": {name: window.to_dict() for name, window in self.windows.items()},
            "completed": self.completed,
            "io_per_job": self.io_per_job,
            "io_per_job_samples": self.io_per_job_samples,
            "last_telemetry_at": self.last_telemetry_at,
            "last_completion_at": self.last_completion_at,
        }

    def to_json(self) -> bytes:
        """The row as stored: the JSON of `to_dict()`, byte for byte, from its parts; each
        window's is kept until it changes (a sample changes two of the five)."""
        if self._head is None or self._head[0] != self.host_id:
            head = to_json(
                {"schema_version": ROW_VERSION, "vm_id": self.vm_id, "host_id": self.host_id}
            )
            self._head = (self.host_id, head[:-1] + b',"windows":{')
        parts = [self._head[1]]
        for name, window in self.windows.items():
            parts += (_MEMBER_NAMES.get(name) or to_json(name) + b":", window.to_json(), b",")
        if len(parts) > 1:
            parts.pop()  # the last comma
        completed = self._completed_json
        if completed is None:
            completed = self._completed_json = to_json(self.completed)
        tail = to_json(
            {
                "io_per_job": self.io_per_job,
                "io_per_job_samples": self.io_per_job_samples,
                "last_telemetry_at": self.last_telemetry_at,
                "last_completion_at": self.last_completion_at,
            }
        )
        parts += (b'},"completed":', completed, b",", tail[1:])
        return b"".join(parts)

    @classmethod
    def from_dict(cls, data: Any, vm_id: str, config: WindowConfig) -> VmStats:
        """The row stored for `vm_id`, or a fresh one for None; RowError if it is unreadable."""
        if data is None:
            return cls(vm_id=vm_id, config=config)
        if not isinstance(data, dict):
            raise RowError(f"vm_stats[{vm_id}]: expected a JSON object, got {type(data).__name__}")
        try:
            stored = _StoredRow.model_validate(data)
        except ValidationError as exc:
            raise RowError(describe_validation_error(f"vm_stats[{vm_id}]", exc)) from None
        if stored.vm_id != vm_id:
            raise RowError(f"vm_stats[{vm_id}]: vm_id: the row says {stored.vm_id!r}")
        windows = {}
        for name, window in stored.windows.items():
            wanted = config.rate_window_s if name in _RATE_WINDOWS else config.io_per_job_window_s
            if window.window_s == wanted and window.bucket_s == config.bucket_s:
                windows[name] = SlidingWindow.from_dict(window.model_dump())
            # else: a changed setting starts that window afresh
        return cls(
            vm_id=vm_id,
            config=config,
            host_id=stored.host_id,
            windows=windows,
            completed=stored.completed,
            io_per_job=stored.io_per_job,
            io_per_job_samples=stored.io_per_job_samples,
            last_telemetry_at=stored.last_telemetry_at,
            last_completion_at=stored.last_completion_at,
        )

    # --- inputs -----------------------------------------------------------------------------

    def add_io(self, host_id: str, sampled_at: float, io_ops: float) -> bool:
        """Count one I/O sample; False if it is not newer than the last one (a re-delivery)."""
        if self.last_telemetry_at is not None and sampled_at <= self.last_telemetry_at:
            return False
        self.host_id = host_id
        self.last_telemetry_at = sampled_at
        self.windows["io_ops"].add(sampled_at, io_ops)
        self.windows["io_ops_long"].add(sampled_at, io_ops)
        self._prune(sampled_at)
        self._estimate_io_per_job()
        return True

    def add_completion(self, job_id: str, finished_at: float, service_s: float) -> bool:
        """Count one completed job; False if this job id was already counted."""
        if job_id in self.completed:
            return False
        self.completed[job_id] = finished_at
        self._completed_json = None
        bisect.insort(self._finished, finished_at)
        self.windows["jobs"].add(finished_at, 1)
        self.windows["jobs_long"].add(finished_at, 1)
        self.windows["busy_s"].add(finished_at, service_s)
        self.last_completion_at = max(finished_at, self.last_completion_at or 0.0)
        self._prune(finished_at)
        if self.last_telemetry_at is not None and finished_at <= self.last_telemetry_at:
            self._estimate_io_per_job()  # a late completion whose I/O is already counted
        return True

    # --- outputs ----------------------------------------------------------------------------

    def io_ops_per_s(self, now: float) -> float:
        """Dom0's meter over the rate window as of the VM's newest sample (never later than
        `now`). A row catching up on a backlog (a worker restarted after an outage reads its
        samples from the past) must not read as idle because the window at `now` holds none of
        them yet; a VM gone silent shows as telemetry age (stale), never as an idle meter."""
        window = self.windows["io_ops"]
        at = now if window.latest_at is None else min(now, window.latest_at)
        return window.rate_per_s(at)

    def load_jobs_per_s(self, now: float) -> float:
        """Eq. 1: jobs completed per second over the rate window (or since first seen)."""
        return self.windows["jobs"].rate_per_s(now)

    def busy_fraction(self, now: float) -> float:
        return min(1.0, self.windows["busy_s"].rate_per_s(now))

    def state(self, now: float) -> VmState:
        """The VM's published state (topic vm-state) as of `now`."""
        return VmState(**self._state_fields(now))

    def state_bytes(self, now: float) -> bytes:
        """`state(now).to_bytes()` without validating what this row computed itself (the
        vm_stats agent publishes one per VM sample; tests check both give the same bytes):
        every field in `VmState`'s order, None left out, as `Event.to_bytes` writes them."""
        return to_json(
            {name: value for name, value in self._state_fields(now).items() if value is not None}
        )

    def _state_fields(self, now: float) -> dict[str, Any]:
        """Every `VmState` field, in its order (what the row does not know at its default)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "vm_id": self.vm_id,
            "host_id": self.host_id,
            "io_ops_per_s": self.io_ops_per_s(now),
            "load_jobs_per_s": self.load_jobs_per_s(now),
            "io_per_job": self.io_per_job,
            "io_per_job_samples": self.io_per_job_samples,
            "busy_fraction": self.busy_fraction(now),
            "outstanding_jobs": 0,  # (each dispatcher counts its own: module doc)
            "last_telemetry_at": self.last_telemetry_at,
            "last_completion_at": self.last_completion_at,
            "last_decision_at": None,
            "updated_at": now,
        }

    # --- internals --------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        # At most once per bucket: pruning walks the map, and a row taking hundreds of events a
        # second would otherwise pay O(recent jobs) for every one of them.
        if not self.completed or (
            self.pruned_at is not None and now - self.pruned_at < self.config.bucket_s
        ):
            return  # (a VM that only sends telemetry has nothing to prune)
        self.pruned_at = now
        horizon = now - max(self.config.rate_window_s, self.config.io_per_job_window_s)
        kept = {j: t for j, t in self.completed.items() if t >= horizon}
        if len(kept) < len(self.completed):
            self.completed, self._completed_json = kept, None
            del self._finished[: bisect.bisect_left(self._finished, horizon)]  # (t < horizon)

    def _estimate_io_per_job(self) -> None:
        until = self.last_telemetry_at
        if until is None or len(self.completed) < self.config.io_per_job_min_jobs:
            return  # (too few jobs seen at all: the estimate stands without a count)
        io = self.windows["io_ops_long"]
        since = (io.oldest_bucket(until) - 1) * io.bucket_s
        finished = self._finished  # jobs finished in (since, until]:
        jobs = bisect.bisect_right(finished, until) - bisect.bisect_right(finished, since)
        if jobs >= self.config.io_per_job_min_jobs:
            self.io_per_job = io.total(until) / jobs
            self.io_per_job_samples = jobs
