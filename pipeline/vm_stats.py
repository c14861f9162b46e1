"""Per-VM measurements: the paper's steps 2 and 3, kept current, as plain data.

One `VmStats` row per VM lives in the `vm_stats` table (RocksDB, changelog). Everything about a
VM arrives on the VM's own partition (I/O samples, completions, decisions are all keyed by vm_id),
so the row is updated by one agent without joins:

- I/O samples add their `io_ops` to an event-time bucketed window and move the VM to the host
  that sampled it (a migration needs nothing else);
- completions add to the job-count and busy-time windows (load, Eq. 1) and leave the in-flight
  count;
- decisions add to the in-flight count (dispatched, not yet completed).

Windows are `pipeline.windows.SlidingWindow`s (event time, plain data), the same code the
simulator uses: rates over `rate_window_s`, `io_per_job` over `io_per_job_window_s`.

What the row remembers of single jobs is only counts: jobs in flight per dispatch bucket (so
that jobs past `inflight_timeout_s`, presumed lost by their guest, stop counting). What must be
remembered per job, to make decisions and completions idempotent, is a `JobMark` of its own
(table `vm_jobs`, keyed by job id, in the VM's partition): the row stays the same size however
many jobs a VM takes, instead of carrying every job id of the last minute and being rewritten
whole several times a second.

`io_per_job` (Table 2) is re-estimated on every completion as the ratio of windowed sums,
`Σ io_ops / Σ jobs` over its window, once the window holds at least `min_jobs` completions;
until then the last estimate stands. A ratio of sums over a sliding window follows drift within
one window and does not overweight a single odd job, which a mean of per-job ratios would.

Every input is idempotent: a re-delivered sample (not newer than the last one), completion (its
job's mark says completed) or decision (its job's mark exists: in flight or completed) changes
nothing. The caller looks the mark up, passes it in, and stores the mark returned. Time comes in
as arguments; nothing here reads a clock or touches Kafka.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.events import IoSample, JobCompletion, VmState
from pipeline.windows import SlidingWindow


@dataclass(frozen=True)
class WindowConfig:
    """How the per-VM windows are kept (settings `VMLB_RATE_WINDOW_S`, ...).

    Rates (I/O, load, busy fraction) use a short window so the dispatcher sees a host fill up
    within seconds; `io_per_job` uses a longer one, since a ratio needs many jobs to be steady.
    """

    rate_window_s: float = 5.0
    io_per_job_window_s: float = 60.0
    bucket_s: float = 1.0
    io_per_job_min_jobs: int = 20
    #: A job in flight longer than this is presumed lost by its guest and stops counting.
    inflight_timeout_s: float = 600.0

    @property
    def inflight_bucket_s(self) -> float:
        """In-flight jobs are counted per dispatch bucket this wide: at most ~60 buckets."""
        return max(self.bucket_s, self.inflight_timeout_s / 60)

    @property
    def dedupe_s(self) -> float:
        """How long a completed job's mark is kept: a duplicate older than every window counts
        nowhere anyway."""
        return max(self.rate_window_s, self.io_per_job_window_s)

    def rate_window(self) -> SlidingWindow:
        return SlidingWindow(self.rate_window_s, self.bucket_s)

    def io_per_job_window(self) -> SlidingWindow:
        return SlidingWindow(self.io_per_job_window_s, self.bucket_s)


#: The row's windows: name -> which WindowConfig window it is.
_RATE_WINDOWS = ("io_ops", "jobs", "busy_s")
_LONG_WINDOWS = ("io_ops_long", "jobs_long")


@dataclass(frozen=True)
class JobMark:
    """What is remembered of one job, for idempotence (table `vm_jobs`, key job id)."""

    vm_id: str
    dispatched_at: float | None = None  # its decision was counted (in flight from then)
    finished_at: float | None = None  # its completion was counted

    def expires_at(self, config: WindowConfig) -> float:
        """When the mark may be forgotten: after the dedupe window once completed, else when the
        job stops counting in flight."""
        if self.finished_at is not None:
            return self.finished_at + config.dedupe_s
        assert self.dispatched_at is not None
        return self.dispatched_at + config.inflight_timeout_s

    def to_dict(self) -> dict[str, Any]:
        return {"vm_id": self.vm_id, "d": self.dispatched_at, "c": self.finished_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobMark:
        return cls(vm_id=data["vm_id"], dispatched_at=data.get("d"), finished_at=data.get("c"))


@dataclass
class VmStats:
    """The `vm_stats` table row of one VM. Plain data: `to_dict()`/`from_dict()` round-trip."""

    vm_id: str
    config: WindowConfig = field(default_factory=WindowConfig, repr=False, compare=False)
    host_id: str | None = None
    windows: dict[str, SlidingWindow] = field(default_factory=dict)
    #: Jobs dispatched and not completed, per dispatch bucket (`inflight_bucket_s` wide).
    inflight: dict[int, int] = field(default_factory=dict)
    io_per_job: float | None = None
    io_per_job_samples: int = 0
    last_telemetry_at: float | None = None
    last_completion_at: float | None = None
    last_decision_at: float | None = None
    #: When the in-flight counts were last pruned (memory only: pruning is cheap to redo, and a
    #: pruned map is only smaller, so it need not survive a restore).
    pruned_at: float | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _RATE_WINDOWS:
            self.windows.setdefault(name, self.config.rate_window())
        for name in _LONG_WINDOWS:
            self.windows.setdefault(name, self.config.io_per_job_window())

    # --- plain data -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "host_id": self.host_id,
            "windows": {name: window.to_dict() for name, window in self.windows.items()},
            "inflight": {str(bucket): count for bucket, count in self.inflight.items()},
            "io_per_job": self.io_per_job,
            "io_per_job_samples": self.io_per_job_samples,
            "last_telemetry_at": self.last_telemetry_at,
            "last_completion_at": self.last_completion_at,
            "last_decision_at": self.last_decision_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, vm_id: str, config: WindowConfig) -> VmStats:
        if not data:
            return cls(vm_id=vm_id, config=config)
        fields = {key: value for key, value in data.items() if key not in ("windows", "inflight")}
        # Rows written before job marks existed kept job ids in "inflight" and "completed":
        # their counts restart (the dedupe of those jobs is lost once, at upgrade).
        fields.pop("completed", None)
        inflight = {
            int(bucket): count
            for bucket, count in (data.get("inflight") or {}).items()
            if isinstance(count, int) and str(bucket).lstrip("-").isdigit()
        }
        windows = {}
        for name, window in data.get("windows", {}).items():
            restored = SlidingWindow.from_dict(window)
            wanted = config.rate_window_s if name in _RATE_WINDOWS else config.io_per_job_window_s
            if restored.window_s == wanted and restored.bucket_s == config.bucket_s:
                windows[name] = restored  # a changed setting starts that window afresh
        return cls(config=config, windows=windows, inflight=inflight, **fields)

    # --- inputs -----------------------------------------------------------------------------

    def add_sample(self, sample: IoSample) -> bool:
        """Count one I/O sample; False if it is not newer than the last one (a re-delivery)."""
        if self.last_telemetry_at is not None and sample.sampled_at <= self.last_telemetry_at:
            return False
        self.host_id = sample.host_id
        self.last_telemetry_at = sample.sampled_at
        self.windows["io_ops"].add(sample.sampled_at, sample.io_ops)
        self.windows["io_ops_long"].add(sample.sampled_at, sample.io_ops)
        self._prune(sample.sampled_at)
        return True

    def add_completion(self, done: JobCompletion, mark: JobMark | None) -> JobMark | None:
        """Count one completed job, given its mark; the mark to store, or None if it was
        already counted (a re-delivery).

        A completion can overtake its decision (they travel on different topics): the job is
        then marked completed without having counted in flight, and its decision, when it
        arrives, finds the mark and changes nothing.
        """
        if mark is not None and mark.finished_at is not None:
            return None
        dispatched_at = mark.dispatched_at if mark is not None else None
        if dispatched_at is not None:
            bucket = self._inflight_bucket(dispatched_at)
            left = self.inflight.get(bucket, 0) - 1
            if left > 0:
                self.inflight[bucket] = left
            else:
                self.inflight.pop(bucket, None)  # also when it already timed out: stays at 0
        self.windows["jobs"].add(done.finished_at, 1)
        self.windows["jobs_long"].add(done.finished_at, 1)
        self.windows["busy_s"].add(done.finished_at, done.service_s)
        self.last_completion_at = max(done.finished_at, self.last_completion_at or 0.0)
        self._prune(done.finished_at)
        self._estimate_io_per_job(done.finished_at)
        return JobMark(self.vm_id, dispatched_at=dispatched_at, finished_at=done.finished_at)

    def add_dispatch(
        self, job_id: str, dispatched_at: float, mark: JobMark | None
    ) -> JobMark | None:
        """Count one job dispatched to this VM, given its mark; the mark to store, or None if
        the job was already counted (in flight or completed)."""
        self.last_decision_at = max(dispatched_at, self.last_decision_at or 0.0)
        if mark is not None:
            return None
        bucket = self._inflight_bucket(dispatched_at)
        self.inflight[bucket] = self.inflight.get(bucket, 0) + 1
        self._prune(dispatched_at)
        return JobMark(self.vm_id, dispatched_at=dispatched_at)

    def outstanding_jobs(self) -> int:
        return sum(self.inflight.values())

    # --- outputs ----------------------------------------------------------------------------

    def io_ops_per_s(self, now: float) -> float:
        return self.windows["io_ops"].rate_per_s(now)

    def load_jobs_per_s(self, now: float) -> float:
        """Eq. 1: jobs completed per second over the rate window (or since first seen)."""
        return self.windows["jobs"].rate_per_s(now)

    def busy_fraction(self, now: float) -> float:
        return min(1.0, self.windows["busy_s"].rate_per_s(now))

    def state(self, now: float) -> VmState:
        """The VM's published state (topic vm-state) as of `now`."""
        return VmState(
            vm_id=self.vm_id,
            host_id=self.host_id,
            io_ops_per_s=self.io_ops_per_s(now),
            load_jobs_per_s=self.load_jobs_per_s(now),
            io_per_job=self.io_per_job,
            io_per_job_samples=self.io_per_job_samples,
            busy_fraction=self.busy_fraction(now),
            outstanding_jobs=self.outstanding_jobs(),
            last_telemetry_at=self.last_telemetry_at,
            last_completion_at=self.last_completion_at,
            last_decision_at=self.last_decision_at,
            updated_at=now,
        )

    # --- internals --------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        # At most once per bucket: a row takes hundreds of events a second.
        if self.pruned_at is not None and now - self.pruned_at < self.config.bucket_s:
            return
        self.pruned_at = now
        oldest = self._inflight_bucket(now - self.config.inflight_timeout_s)
        for bucket in [b for b in self.inflight if b < oldest]:
            del self.inflight[bucket]

    def _inflight_bucket(self, t: float) -> int:
        return math.floor(t / self.config.inflight_bucket_s)

    def _estimate_io_per_job(self, now: float) -> None:
        jobs = self.windows["jobs_long"].total(now)
        if jobs >= self.config.io_per_job_min_jobs:
            self.io_per_job = self.windows["io_ops_long"].total(now) / jobs
            self.io_per_job_samples = int(jobs)
