"""Job arrivals: Poisson, bursts on top of a Poisson base, or a diurnal (sinusoidal) rate.

Generated up front from the scenario's seed, so every policy faces the very same jobs (same
times, types and sizes): differences in the results come from the policies alone.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

from benchmarks.sim.scenario import ArrivalKind, Scenario, SizeDistribution


@dataclass(frozen=True, slots=True)
class Arrival:
    at_s: float
    job_type: str
    cpu_s: float
    io_ops: float


def _poisson_times(rate_per_s: float, duration_s: float, rng: random.Random) -> list[float]:
    times: list[float] = []
    t = rng.expovariate(rate_per_s)
    while t < duration_s:
        times.append(t)
        t += rng.expovariate(rate_per_s)
    return times


def _diurnal_times(
    base_per_s: float, amplitude: float, period_s: float, duration_s: float, rng: random.Random
) -> list[float]:
    # Thinning (Lewis-Shedler): draw at the peak rate, keep each with rate(t) / peak.
    peak = base_per_s * (1.0 + amplitude)
    return [
        t
        for t in _poisson_times(peak, duration_s, rng)
        if rng.random() * peak
        < base_per_s * (1.0 + amplitude * math.sin(2 * math.pi * t / period_s))
    ]


def _burst_times(scenario: Scenario, rng: random.Random) -> list[float]:
    burst = scenario.arrivals.burst
    assert burst is not None
    times: list[float] = []
    start = burst.first_at_s
    while start < scenario.duration_s:
        times.extend(start + rng.random() * burst.spread_s for _ in range(burst.jobs))
        start += burst.every_s
    return [t for t in times if t < scenario.duration_s]


def arrival_times(scenario: Scenario, rng: random.Random) -> list[float]:
    arrivals = scenario.arrivals
    base = scenario.base_rate_per_s()
    if arrivals.kind is ArrivalKind.DIURNAL:
        assert arrivals.diurnal is not None
        times = _diurnal_times(
            base, arrivals.diurnal.amplitude, arrivals.diurnal.period_s, scenario.duration_s, rng
        )
    else:
        times = _poisson_times(base, scenario.duration_s, rng)
    if arrivals.kind is ArrivalKind.BURST:
        times.extend(_burst_times(scenario, rng))
    return sorted(times)


def generate(scenario: Scenario) -> list[Arrival]:
    """Every job of the run, in arrival order, from the scenario's seed."""
    rng = random.Random(f"{scenario.seed}/arrivals")
    times = arrival_times(scenario, rng)
    names = list(scenario.job_types)
    cumulative = list(itertools.accumulate(scenario.job_types[name].weight for name in names))
    total = cumulative[-1]
    jobs: list[Arrival] = []
    for t in times:
        name = names[bisect.bisect_right(cumulative, rng.random() * total)]
        spec = scenario.job_types[name]
        factor = rng.expovariate(1.0) if spec.size is SizeDistribution.EXPONENTIAL else 1.0
        jobs.append(Arrival(t, name, spec.cpu_s * factor, spec.io_ops * factor))
    return jobs
