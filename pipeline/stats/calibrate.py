"""Table 1 measured: a host's I/O limit from the summed I/O of its VMs.

The paper sets `limit[host] = Σ mp_exchange[vm]` once, at set-up. We take the same sum per
sampling interval (the host's total I/O rate as its Dom0 saw it) over a calibration run and set

    limit = percentile_p(summed rate) * headroom        (defaults: p95, headroom 0.9)

Run calibration while the host is driven to saturation (as VMware SIOC calibrates from measured
peak throughput): the summed rate then is the host's I/O capacity. The high percentile rather
than the maximum ignores a one-interval spike; the headroom keeps the dispatcher from filling the
host right up to the point where its queues overflow (the paper's bandwidth collapse).

Pure: samples in, results out; `vmlb calibrate` does the Kafka part.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.events import IoSample


@dataclass(frozen=True)
class Calibration:
    host_id: str
    limit_ops_per_s: float | None
    intervals: int
    peak_ops_per_s: float
    detail: str


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def calibrate(
    samples: Iterable[IoSample], p: float = 95.0, headroom: float = 0.9, min_intervals: int = 5
) -> dict[str, Calibration]:
    """One Calibration per host seen in `samples`."""
    if not 0 < p <= 100:
        raise ValueError("percentile must be in (0, 100]")
    if not 0 < headroom <= 1:
        raise ValueError("headroom must be in (0, 1]")
    # host -> interval index -> summed ops per second of all its VMs in that interval
    sums: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for sample in samples:
        interval = sample.interval_index
        sums[sample.host_id][interval] += sample.io_ops_per_s
    results = {}
    for host_id, by_interval in sorted(sums.items()):
        rates = list(by_interval.values())
        peak = max(rates)
        if len(rates) < min_intervals:
            results[host_id] = Calibration(
                host_id,
                None,
                len(rates),
                peak,
                f"only {len(rates)} sampling intervals; need {min_intervals} (run longer)",
            )
            continue
        limit = percentile(rates, p) * headroom
        results[host_id] = Calibration(
            host_id,
            limit,
            len(rates),
            peak,
            f"p{p:g} of the summed VM I/O rate over {len(rates)} intervals x headroom {headroom:g}",
        )
    return results
