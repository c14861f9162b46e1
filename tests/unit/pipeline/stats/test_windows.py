"""pipeline.stats.windows.SlidingWindow: bucket edges, spans, pruning, plain-data round trip."""

from __future__ import annotations

import math
import random

import pytest
from pydantic_core import from_json, to_json

from pipeline.stats.windows import SlidingWindow


def test_total_covers_window_ending_now() -> None:
    window = SlidingWindow(window_s=10.0, bucket_s=1.0)
    window.add(0.5, 3.0)  # bucket 0
    window.add(9.9, 4.0)  # bucket 9
    # At now=9.9 the window is buckets 0..9: both values.
    assert window.total(9.9) == 7.0
    # At now=10.0 bucket 0 leaves (oldest = bucket(0.0) + 1 = 1).
    assert window.total(10.0) == 4.0
    # At now=19.99 bucket 9 is the oldest still inside (bucket(9.99) + 1 = 10): nothing left.
    assert window.total(19.99) == 0.0


def test_values_after_now_are_not_counted() -> None:
    window = SlidingWindow(10.0)
    window.add(5.0, 1.0)
    assert window.total(4.0) == 0.0
    assert window.total(5.0) == 1.0


def test_rate_uses_full_window_once_old_enough() -> None:
    window = SlidingWindow(window_s=10.0, bucket_s=1.0)
    for t in range(30):
        window.add(t + 0.5, 2.0)  # 2 per second
    assert window.rate_per_s(29.9) == pytest.approx(2.0)
    assert window.span_s(29.9) == 10.0


def test_rate_of_young_window_uses_time_since_first_value() -> None:
    window = SlidingWindow(window_s=10.0, bucket_s=1.0)
    window.add(100.2, 6.0)
    window.add(102.7, 6.0)
    # buckets 100..102 seen: span 3 s, rate 12 / 3.
    assert window.span_s(102.7) == 3.0
    assert window.rate_per_s(102.7) == pytest.approx(4.0)


def test_empty_window() -> None:
    window = SlidingWindow(window_s=5.0, bucket_s=0.5)
    assert window.total(123.0) == 0.0
    assert window.rate_per_s(123.0) == 0.0
    assert window.span_s(123.0) == 5.0


def test_old_values_are_pruned_and_late_ones_dropped() -> None:
    window = SlidingWindow(window_s=3.0, bucket_s=1.0)
    window.add(0.0, 1.0)
    window.add(10.0, 1.0)
    assert window.to_dict()["buckets"] == {"10": 1.0}
    window.add(2.0, 5.0)  # older than the window behind the newest value: dropped
    assert window.total(10.0) == 1.0


def test_round_trip_as_plain_data() -> None:
    window = SlidingWindow(window_s=4.0, bucket_s=0.5)
    window.add(1.1, 2.0)
    window.add(2.6, 3.0)
    copy = SlidingWindow.from_dict(window.to_dict())
    assert copy.total(3.0) == window.total(3.0) == 5.0
    assert copy.rate_per_s(3.0) == window.rate_per_s(3.0)


@pytest.mark.parametrize(("window_s", "bucket_s"), [(0.0, 1.0), (1.0, 0.0), (1.0, 2.0)])
def test_bad_sizes_are_refused(window_s: float, bucket_s: float) -> None:
    with pytest.raises(ValueError, match="window_s"):
        SlidingWindow(window_s, bucket_s)


@pytest.mark.parametrize("seed", range(40))
def test_to_json_is_the_json_of_to_dict_whatever_the_order_of_values(seed: int) -> None:
    # to_json() is built from parts kept between calls (the members of the buckets but the
    # newest); late values, pruning, round trips and big jumps in time must not make it drift
    # from what a row's encoding of to_dict() would give, byte for byte.
    rng = random.Random(seed)
    window_s = rng.choice([3.0, 5.0, 7.5, 60.0])
    window = SlidingWindow(window_s, rng.choice([b for b in (0.5, 1.0, 2.5) if b <= window_s]))
    reference = _Reference(window.window_s, window.bucket_s)
    t = 1000.0
    for _ in range(rng.randint(1, 150)):
        t += rng.choice([0.0, 0.3, 1.0, 1.0, 2.0, 10.0, 100.0]) if rng.random() < 0.8 else 0.0
        at = t if rng.random() < 0.8 else t - rng.uniform(0, window_s * 1.5)
        value = rng.choice([0, 1, 50, 412, 0.1, 1e-7, 3e20])
        window.add(at, value)
        reference.add(at, value)
        assert window.to_dict()["buckets"] == reference.buckets()
        now = t + rng.choice([0.0, 0.5, window_s, -1.0])
        assert window.rate_per_s(now) == window.total(now) / window.span_s(now)
        if rng.random() < 0.05:
            window = SlidingWindow.from_dict(window.to_dict())
        if rng.random() < 0.5:
            assert window.to_json() == to_json(window.to_dict())
    assert window.to_json() == to_json(window.to_dict())
    assert SlidingWindow.from_dict(from_json(window.to_json())).to_dict() == window.to_dict()


class _Reference:
    """SlidingWindow.add as first written (every bucket scanned at each prune), to check the
    faster one against."""

    def __init__(self, window_s: float, bucket_s: float) -> None:
        self.window_s, self.bucket_s = window_s, bucket_s
        self._buckets: dict[int, float] = {}
        self.latest_at: float | None = None

    def add(self, t: float, value: float) -> None:
        def bucket(at: float) -> int:
            return math.floor(at / self.bucket_s)

        if self.latest_at is not None and bucket(t) < bucket(self.latest_at - self.window_s) + 1:
            return
        key = bucket(t)
        self._buckets[key] = self._buckets.get(key, 0.0) + value
        if self.latest_at is None or t > self.latest_at:
            moved = self.latest_at is None or key > bucket(self.latest_at)
            self.latest_at = t
            if moved:
                oldest = bucket(t - self.window_s) + 1
                for stale in [k for k in self._buckets if k < oldest]:
                    del self._buckets[stale]

    def buckets(self) -> dict[str, float]:
        return {str(key): value for key, value in self._buckets.items()}


def test_to_json_writes_a_window_shape_as_given():
    # 5 and 5.0 are one dict key but not one JSON number: a kept encoding must not mix them.
    floats, ints = SlidingWindow(5.0, 1.0), SlidingWindow(5, 1)
    for window in (floats, ints, SlidingWindow(5.0, 1.0)):
        window.add(1.0, 1)
        assert window.to_json() == to_json(window.to_dict())
    assert ints.to_json().startswith(b'{"window_s":5,"bucket_s":1,')
