import pytest

from pipeline.events import IoCounters, IoSample
from pipeline.stats.calibrate import calibrate, percentile


def sample(host: str, vm: str, t: float, io_ops: int, interval_s: float = 1.0) -> IoSample:
    return IoSample(
        host_id=host,
        vm_id=vm,
        sampled_at=t,
        interval_s=interval_s,
        io_ops=io_ops,
        counters=IoCounters(),
    )


def test_percentile_nearest_rank():
    assert percentile([5, 1, 4, 2, 3], 100) == 5
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95


def test_limit_is_the_percentile_of_the_summed_vm_rates_times_headroom():
    samples = []
    for t in range(20):  # two VMs; the host sums to 1000 ops/s except one 5000 spike
        spike = 4000 if t == 7 else 0
        samples += [sample("h1", "a", 100.0 + t, 600 + spike), sample("h1", "b", 100.0 + t, 400)]
    result = calibrate(samples, p=95, headroom=0.9)["h1"]
    assert result.peak_ops_per_s == 5000
    assert result.limit_ops_per_s == pytest.approx(1000 * 0.9)  # the spike is above p95
    assert result.intervals == 20


def test_rates_use_the_sampling_interval():
    samples = [sample("h1", "a", 100.0 + 2 * t, 400, interval_s=2.0) for t in range(10)]
    assert calibrate(samples, p=100, headroom=1.0)["h1"].limit_ops_per_s == pytest.approx(200.0)


def test_too_few_intervals_gives_no_limit_and_says_why():
    result = calibrate([sample("h1", "a", 100.0, 10)], min_intervals=5)["h1"]
    assert result.limit_ops_per_s is None
    assert "run longer" in result.detail


@pytest.mark.parametrize(("p", "headroom"), [(0, 0.9), (101, 0.9), (95, 0), (95, 1.5)])
def test_bad_parameters_are_refused(p, headroom):
    with pytest.raises(ValueError):
        calibrate([], p=p, headroom=headroom)
