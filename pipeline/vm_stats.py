"""Per-VM measurements: the paper's steps 2 and 3, kept current, as plain data.

One `VmStats` row per VM lives in the `vm_stats` table (RocksDB, changelog). Everything about a
VM arrives on the VM's own partition (I/O samples, completions, decisions are all keyed by vm_id),
so the row is updated by one agent without joins:

- I/O samples add their `io_ops` to an event-time bucketed window and move the VM to the host
  that sampled it (a migration needs nothing else);
- completions add to the job-count and busy-time windows (load, Eq. 1) and leave the in-flight
  set;
- decisions add the job to the in-flight set (dispatched, not yet completed).

`io_per_job` (Table 2) is re-estimated on every completion as the ratio of windowed sums,
`Σ io_ops / Σ jobs` over the load window, once the window holds at least `min_jobs` completions;
until then the last estimate stands. A ratio of sums over a sliding window follows drift within
one window and does not overweight a single odd job, which a mean of per-job ratios would.

Every input is idempotent: a re-delivered sample (not newer than the last one), completion (job
id already seen) or decision (job already in flight or completed) changes nothing. Time comes in
as arguments; nothing here reads a clock or touches Kafka.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.events import IoSample, JobCompletion, VmState


@dataclass(frozen=True)
class WindowConfig:
    """How the per-VM windows are kept (settings `VMLB_LOAD_WINDOW_S`, `VMLB_BUCKET_S`, ...)."""

    load_window_s: float = 30.0
    bucket_s: float = 1.0
    io_per_job_min_jobs: int = 20
    #: A job in flight longer than this is presumed lost by its guest and stops counting.
    inflight_timeout_s: float = 600.0

    def bucket(self, t: float) -> int:
        return int(t // self.bucket_s)


def _window_add(buckets: dict[str, float], key: int, value: float) -> None:
    name = str(key)  # JSON object keys are strings; the row must stay plain JSON
    buckets[name] = buckets.get(name, 0.0) + value


def _window_prune(buckets: dict[str, float], oldest: int) -> None:
    for name in [name for name in buckets if int(name) < oldest]:
        del buckets[name]


def _window_sum(buckets: dict[str, float], oldest: int) -> float:
    return sum(value for name, value in buckets.items() if int(name) >= oldest)


@dataclass
class VmStats:
    """The `vm_stats` table row of one VM. Plain data: `to_dict()`/`from_dict()` round-trip."""

    vm_id: str
    host_id: str | None = None
    io_ops: dict[str, float] = field(default_factory=dict)
    jobs: dict[str, float] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)
    inflight: dict[str, float] = field(default_factory=dict)  # job_id -> dispatched_at
    completed: dict[str, float] = field(default_factory=dict)  # job_id -> finished_at (dedupe)
    io_per_job: float | None = None
    io_per_job_samples: int = 0
    first_seen_at: float | None = None
    last_telemetry_at: float | None = None
    last_completion_at: float | None = None
    last_decision_at: float | None = None

    # --- plain data -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, vm_id: str) -> VmStats:
        if not data:
            return cls(vm_id=vm_id)
        return cls(**data)

    # --- inputs -----------------------------------------------------------------------------

    def add_sample(self, sample: IoSample, config: WindowConfig) -> bool:
        """Count one I/O sample; False if it is not newer than the last one (a re-delivery)."""
        if self.last_telemetry_at is not None and sample.sampled_at <= self.last_telemetry_at:
            return False
        self._seen(sample.sampled_at)
        self.host_id = sample.host_id
        self.last_telemetry_at = sample.sampled_at
        _window_add(self.io_ops, config.bucket(sample.sampled_at), sample.io_ops)
        self._prune(sample.sampled_at, config)
        return True

    def add_completion(self, done: JobCompletion, config: WindowConfig) -> bool:
        """Count one completed job; False if this job id was already counted."""
        if done.job_id in self.completed:
            return False
        self._seen(done.finished_at)
        self.completed[done.job_id] = done.finished_at
        self.inflight.pop(done.job_id, None)
        bucket = config.bucket(done.finished_at)
        _window_add(self.jobs, bucket, 1)
        _window_add(self.busy_s, bucket, done.service_s)
        self.last_completion_at = max(done.finished_at, self.last_completion_at or 0.0)
        self._prune(done.finished_at, config)
        self._estimate_io_per_job(done.finished_at, config)
        return True

    def add_dispatch(self, job_id: str, dispatched_at: float, config: WindowConfig) -> bool:
        """Count one job dispatched to this VM; False if already in flight or completed."""
        self.last_decision_at = max(dispatched_at, self.last_decision_at or 0.0)
        if job_id in self.inflight or job_id in self.completed:
            return False
        self._seen(dispatched_at)
        self.inflight[job_id] = dispatched_at
        self._prune(dispatched_at, config)
        return True

    # --- outputs ----------------------------------------------------------------------------

    def io_ops_per_s(self, now: float, config: WindowConfig) -> float:
        return _window_sum(self.io_ops, self._oldest(now, config)) / self._span_s(now, config)

    def load_jobs_per_s(self, now: float, config: WindowConfig) -> float:
        """Eq. 1: jobs completed per second over the load window (or since first seen)."""
        return _window_sum(self.jobs, self._oldest(now, config)) / self._span_s(now, config)

    def busy_fraction(self, now: float, config: WindowConfig) -> float:
        busy = _window_sum(self.busy_s, self._oldest(now, config)) / self._span_s(now, config)
        return min(1.0, busy)

    def state(self, now: float, config: WindowConfig) -> VmState:
        """The VM's published state (topic vm-state) as of `now`."""
        return VmState(
            vm_id=self.vm_id,
            host_id=self.host_id,
            io_ops_per_s=self.io_ops_per_s(now, config),
            load_jobs_per_s=self.load_jobs_per_s(now, config),
            io_per_job=self.io_per_job,
            io_per_job_samples=self.io_per_job_samples,
            busy_fraction=self.busy_fraction(now, config),
            outstanding_jobs=len(self.inflight),
            last_telemetry_at=self.last_telemetry_at,
            last_completion_at=self.last_completion_at,
            last_decision_at=self.last_decision_at,
            updated_at=now,
        )

    # --- internals --------------------------------------------------------------------------

    def _seen(self, t: float) -> None:
        if self.first_seen_at is None or t < self.first_seen_at:
            self.first_seen_at = t

    def _oldest(self, now: float, config: WindowConfig) -> int:
        # The bucket holding `now` is still filling; the window covers the buckets before it
        # plus that one, i.e. load_window_s seconds ending at now.
        return config.bucket(now - config.load_window_s) + 1

    def _span_s(self, now: float, config: WindowConfig) -> float:
        """Seconds the window covers: the full window, or less for a VM seen only recently."""
        if self.first_seen_at is None:
            return config.load_window_s
        buckets_seen = config.bucket(now) - config.bucket(self.first_seen_at) + 1
        return max(config.bucket_s, min(config.load_window_s, buckets_seen * config.bucket_s))

    def _prune(self, now: float, config: WindowConfig) -> None:
        oldest = self._oldest(now, config)
        for buckets in (self.io_ops, self.jobs, self.busy_s):
            _window_prune(buckets, oldest)
        horizon = now - config.load_window_s
        self.completed = {j: t for j, t in self.completed.items() if t >= horizon}
        expired = now - config.inflight_timeout_s
        self.inflight = {j: t for j, t in self.inflight.items() if t >= expired}

    def _estimate_io_per_job(self, now: float, config: WindowConfig) -> None:
        oldest = self._oldest(now, config)
        jobs = _window_sum(self.jobs, oldest)
        if jobs >= config.io_per_job_min_jobs:
            self.io_per_job = _window_sum(self.io_ops, oldest) / jobs
            self.io_per_job_samples = int(jobs)
