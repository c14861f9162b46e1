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

import itertools
import math
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json


class SlidingWindow:
    """Sums of values over the last `window_s` seconds of event time, in `bucket_s` buckets."""

    __slots__ = (
        "_buckets",
        "_dropped",
        "_head",
        "_json",
        "_last_key",
        "_ordered",
        "_previous_key",
        "_sealed",
        "_sealed_n",
        "bucket_s",
        "first_at",
        "latest_at",
        "window_s",
    )

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
        #: `to_json()` as of the last change (a row rewrites its unchanged windows too).
        self._json: bytes | None = None
        #: The start of `to_json()` (the window's shape), once known.
        self._head: bytes | None = None
        #: The bucket added last (the last key of `_buckets`, which keeps insertion order),
        #: and the one added before it (its second-to-last key, unless it was pruned since).
        self._last_key: int | None = None
        self._previous_key: int | None = None
        #: Whether `_buckets`' keys ascend (they do unless a late value opened an older one).
        self._ordered = True
        #: The JSON members (`"<bucket>":<value>`, comma-joined) of the first `_sealed_n`
        #: buckets as `to_json` last wrote them, or None when unknown: a sample changes the
        #: newest bucket only, so a row rewritten every second re-encodes one member of its
        #: 60 s window, not sixty. The first `_dropped` of them are of buckets pruned since
        #: (cut at the next `to_json`): `add` does no encoding, so a window taking several
        #: values between two writes (a worker catching up) encodes each bucket once.
        self._sealed: bytes | None = b""
        self._sealed_n = 0
        self._dropped = 0

    def bucket(self, t: float) -> int:
        return math.floor(t / self.bucket_s)

    def oldest_bucket(self, now: float) -> int:
        return self.bucket(now - self.window_s) + 1

    def add(self, t: float, value: float) -> None:
        """Add `value` at event time `t`. A value older than the window is dropped."""
        # `bucket()` and `oldest_bucket()` inlined: a row's windows take every sample.
        bucket_s = self.bucket_s
        key = math.floor(t / bucket_s)
        latest = self.latest_at
        if latest is not None and key < math.floor((latest - self.window_s) / bucket_s) + 1:
            return
        self._json = None
        if self.first_at is None or t < self.first_at:
            self.first_at = t
        buckets = self._buckets
        if key in buckets:
            if key != self._last_key:  # a late value in an older bucket: re-encode them all
                self._sealed = None
            buckets[key] += value
        else:
            last = self._last_key
            if last is not None and key < last:  # a late value in a new older bucket
                self._ordered = False
            buckets[key] = 0.0 + value
            self._previous_key, self._last_key = last, key
        if latest is None or t > latest:
            self.latest_at = t
            # buckets fall out of the window only when a new one starts
            if latest is None or key > math.floor(latest / bucket_s):
                oldest = math.floor((t - self.window_s) / bucket_s) + 1
                stale = []
                for k in buckets:  # oldest first, but a late value can add an older bucket
                    if k < oldest:
                        stale.append(k)
                    elif self._ordered:
                        break
                if stale:
                    self._unseal(stale)
                    for k in stale:
                        del buckets[k]
                    if not self._ordered:
                        self._ordered = _ascending(buckets)

    def _unseal(self, stale: list[int]) -> None:
        """Account for `stale` (about to be deleted) in `_sealed`: when they are its first
        members (buckets came in time order) they are cut at the next `to_json` (else it is
        rebuilt then)."""
        if self._sealed is None:
            return
        n = len(stale)
        buckets = self._buckets
        if n == 1:
            prefix = next(iter(buckets)) == stale[0]  # (the common case: one bucket)
        else:
            prefix = stale == list(itertools.islice(buckets, n))
        if not prefix:
            self._sealed = None
        elif n < self._sealed_n - self._dropped:
            self._dropped += n
        else:  # every member it holds is stale
            self._sealed, self._sealed_n, self._dropped = b"", 0, 0

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
        """`total(now) / span_s(now)` (inlined: every vm-state record reads three)."""
        buckets = self._buckets
        if not buckets:  # (a VM that only sends telemetry: its job windows)
            return 0.0
        bucket_s, window_s = self.bucket_s, self.window_s
        high = math.floor(now / bucket_s)
        low = math.floor((now - window_s) / bucket_s) + 1
        last = self._last_key
        if self._ordered and last is not None and low <= next(iter(buckets)) and last <= high:
            total = sum(buckets.values())  # (the same sum: every bucket, in the same order)
        else:
            total = sum(value for key, value in buckets.items() if low <= key <= high)
        if self.first_at is None:
            return total / window_s
        seen = high - math.floor(self.first_at / bucket_s) + 1
        return total / max(bucket_s, min(window_s, seen * bucket_s))

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

    def to_json(self) -> bytes:
        """The JSON of `to_dict()`, byte for byte, kept until the window next changes. Built
        from parts: the members of the buckets but the last are kept as JSON (`_sealed`),
        since pydantic-core writes a dict of 60 int-keyed floats in ~20 µs."""
        if self._json is None:
            buckets = self._buckets
            last = self._last_key
            if not buckets or last is None:
                members = b""
            else:
                sealed = self._sealed_members(len(buckets) - 1)
                member = _member(last, buckets[last])
                members = sealed + b"," + member if sealed else member
            head = self._head
            if head is None:
                head = self._head = _head(self.window_s, self.bucket_s)
            tail = to_json({"first_at": self.first_at, "latest_at": self.latest_at})
            self._json = head + b',"buckets":{' + members + b"}," + tail[1:]
        return self._json

    def _sealed_members(self, n: int) -> bytes:
        """The JSON members of the first `n` buckets (every bucket but the last), kept: only
        what changed since the last call is encoded (module doc of `_sealed`)."""
        sealed, done, dropped = self._sealed, self._sealed_n, self._dropped
        if sealed is not None and dropped:
            cut = sealed.index(b",")
            for _ in range(dropped - 1):  # members hold no comma: `"<int>":<number>`
                cut = sealed.index(b",", cut + 1)
            sealed, done = sealed[cut + 1 :], done - dropped
        buckets = self._buckets
        if sealed is None or done > n:
            sealed = to_json({str(k): v for k, v in itertools.islice(buckets.items(), n)})[1:-1]
        elif done < n:
            previous = self._previous_key
            if done + 1 == n and previous in buckets:  # (the common case: the bucket before
                added = _member(previous, buckets[previous])  # the last is the n-th)
            else:
                more = itertools.islice(buckets.items(), done, n)
                added = to_json({str(k): v for k, v in more})[1:-1]
            sealed = sealed + b"," + added if done else added
        self._sealed, self._sealed_n, self._dropped = sealed, n, 0
        return sealed

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlidingWindow:
        window = cls(data["window_s"], data["bucket_s"])
        window._buckets = {int(key): float(value) for key, value in data.get("buckets", {}).items()}
        window._last_key = next(reversed(window._buckets), None)
        window._previous_key = None
        window._ordered = _ascending(window._buckets)
        window._sealed, window._sealed_n, window._dropped = None, 0, 0
        window.first_at = data.get("first_at")
        window.latest_at = data.get("latest_at")
        return window


#: (window_s, bucket_s) -> the start of a window's JSON (a few shapes per process).
_heads: dict[tuple[float, float, type, type], bytes] = {}


def _head(window_s: float, bucket_s: float) -> bytes:
    shape = (window_s, bucket_s, type(window_s), type(bucket_s))
    head = _heads.get(shape)
    if head is None:  # (by type too: 5 and 5.0 are one key, not one JSON)
        head = _heads[shape] = to_json({"window_s": window_s, "bucket_s": bucket_s})[:-1]
    return head


def _ascending(buckets: dict[int, float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(buckets))


def _member(key: int, value: float) -> bytes:
    """One bucket as a JSON object member, as pydantic-core writes it in a dict."""
    return b'"%d":%b' % (key, to_json(value))


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
