"""Event-time sliding windows: sums and rates over the last `window_s` seconds, in buckets.

One small pure module, shared by the live pipeline and the simulator (both through
`pipeline.stats.vm_stats`), so both see load and staleness the same way. A value lands in the bucket of its *event* time, `int(t // bucket_s)`;
`total(now)` sums the buckets from `bucket(now - window_s) + 1` up to `bucket(now)`, i.e. the
window of `window_s` seconds ending at `now`, with the bucket holding `now` still filling.
`rate_per_s(now)` divides by the seconds the window covers: the full window, or less for a
window that started recently (so a new VM's rate is not diluted by time before it existed),
never less than one bucket.

Windows are plain data (`to_dict()` / `from_dict()`), pruned when an `add` starts a new bucket
(`total` reads only the window's buckets, so a bucket pruned late changes nothing), and never
read a clock: the caller passes event and query times, so tests need no sleeping. Faust's
windowed tables are not used on purpose: they expire by wall clock, and keys restored from a
changelog never expire (faust-streaming #385).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class SlidingWindow:
    """Sums of values over the last `window_s` seconds of event time, in `bucket_s` buckets."""

    __slots__ = ("_buckets", "bucket_s", "first_at", "latest_at", "window_s")

    def __init__(self, window_s: float, bucket_s: float = 1.0) -> None:
        if not window_s > 0 or not bucket_s > 0:
            raise ValueError(f"window_s and bucket_s must be > 0, got {window_s!r}, {bucket_s!r}")
        if bucket_s > window_s:
            raise ValueError(f"bucket_s {bucket_s!r} is wider than window_s {window_s!r}")
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: dict[int, float] = {}
        #: Event time of the first value ever added (for the span of a young window).
        self.first_at: float | None = None
        #: Newest event time added; pruning follows it.
        self.latest_at: float | None = None

    def bucket(self, t: float) -> int:
        return math.floor(t / self.bucket_s)

    def oldest_bucket(self, now: float) -> int:
        return self.bucket(now - self.window_s) + 1

    def add(self, t: float, value: float) -> None:
        """Add `value` at event time `t`. A value older than the window is dropped."""
        if self.latest_at is not None and self.bucket(t) < self.oldest_bucket(self.latest_at):
            return
        if self.first_at is None or t < self.first_at:
            self.first_at = t
        key = self.bucket(t)
        self._buckets[key] = self._buckets.get(key, 0.0) + value
        if self.latest_at is None or t > self.latest_at:
            moved_bucket = self.latest_at is None or key > self.bucket(self.latest_at)
            self.latest_at = t
            if moved_bucket:  # buckets fall out of the window only when a new one starts
                oldest = self.oldest_bucket(t)
                for stale in [k for k in self._buckets if k < oldest]:
                    del self._buckets[stale]

    def total(self, now: float) -> float:
        """Σ of values with event time in the window ending at `now`."""
        low, high = self.oldest_bucket(now), self.bucket(now)
        return sum(value for key, value in self._buckets.items() if low <= key <= high)

    def span_s(self, now: float) -> float:
        """Seconds the window covers at `now`: the full window, or since the first value."""
        if self.first_at is None:
            return self.window_s
        buckets_seen = self.bucket(now) - self.bucket(self.first_at) + 1
        return max(self.bucket_s, min(self.window_s, buckets_seen * self.bucket_s))

    def rate_per_s(self, now: float) -> float:
        return self.total(now) / self.span_s(now)

    # --- plain data -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "bucket_s": self.bucket_s,
            # JSON object keys are strings.
            "buckets": {str(key): value for key, value in self._buckets.items()},
            "first_at": self.first_at,
            "latest_at": self.latest_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlidingWindow:
        window = cls(data["window_s"], data["bucket_s"])
        window._buckets = {int(key): float(value) for key, value in data.get("buckets", {}).items()}
        window.first_at = data.get("first_at")
        window.latest_at = data.get("latest_at")
        return window


@dataclass(frozen=True)
class WindowConfig:
    """How a VM's windows are kept (settings `VMLB_RATE_WINDOW_S`, ...; the simulator's too).

    Rates (I/O, load, busy fraction) use a short window so the dispatcher sees a host fill up
    within seconds; `io_per_job` uses a longer one, since a ratio needs many jobs to be steady.
    The defaults here are the only place these defaults are written.
    """

    rate_window_s: float = 5.0
    io_per_job_window_s: float = 60.0
    bucket_s: float = 1.0
    io_per_job_min_jobs: int = 20

    def rate_window(self) -> SlidingWindow:
        return SlidingWindow(self.rate_window_s, self.bucket_s)

    def io_per_job_window(self) -> SlidingWindow:
        return SlidingWindow(self.io_per_job_window_s, self.bucket_s)
