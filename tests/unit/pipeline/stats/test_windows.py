"""pipeline.stats.windows.SlidingWindow: bucket edges, spans, pruning, plain-data round trip."""

from __future__ import annotations

import pytest

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
