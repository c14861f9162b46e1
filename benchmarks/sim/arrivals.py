"""Job arrivals: Poisson, bursts on top of a Poisson base, or a diurnal (sinusoidal) rate.

Generated up front from the scenario's seed, so every policy faces the very same jobs (same
times, types and sizes): differences in the results come from the policies alone.

With `submitters`, each job also carries its submitter and priority. The scenario's own stream is
drawn as without submitters (same times, types and sizes, unless a submitter reweights its mix)
and each of its jobs is dealt to a submitter by share from a separate random stream; a submitter
with arrivals of its own draws them from its own stream (seeded by its name). A submitter's jobs
outside its [from_s, to_s) are dropped after the draw, so a stretch never shifts another's jobs.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

from benchmarks.sim.scenario import ArrivalKind, Arrivals, Scenario, SizeDistribution, Submitter
from pipeline.events import DEFAULT_PRIORITY


@dataclass(frozen=True, slots=True)
class Arrival:
    at_s: float
    job_type: str
    cpu_s: float
    io_ops: float
    #: As on a live `JobSubmission`: None is a job without a submitter.
    submitter: str | None = None
    priority: int = DEFAULT_PRIORITY


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


def _burst_times(arrivals: Arrivals, duration_s: float, rng: random.Random) -> list[float]:
    burst = arrivals.burst
    assert burst is not None
    times: list[float] = []
    start = burst.first_at_s
    while start < duration_s:
        times.extend(start + rng.random() * burst.spread_s for _ in range(burst.jobs))
        start += burst.every_s
    return [t for t in times if t < duration_s]


def arrival_times(
    arrivals: Arrivals, base_per_s: float, duration_s: float, rng: random.Random
) -> list[float]:
    if arrivals.kind is ArrivalKind.DIURNAL:
        assert arrivals.diurnal is not None
        times = _diurnal_times(
            base_per_s, arrivals.diurnal.amplitude, arrivals.diurnal.period_s, duration_s, rng
        )
    else:
        times = _poisson_times(base_per_s, duration_s, rng)
    if arrivals.kind is ArrivalKind.BURST:
        times.extend(_burst_times(arrivals, duration_s, rng))
    return sorted(times)


class _Mix:
    """Draws a job's type and size from a mix of job types."""

    def __init__(self, scenario: Scenario, weights: dict[str, float]) -> None:
        self.scenario = scenario
        self.names = list(weights)
        self.cumulative = list(itertools.accumulate(weights[name] for name in self.names))

    def job(self, at_s: float, rng: random.Random, submitter: Submitter | None) -> Arrival:
        name = self.names[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]
        spec = self.scenario.job_types[name]
        factor = rng.expovariate(1.0) if spec.size is SizeDistribution.EXPONENTIAL else 1.0
        if submitter is None:
            return Arrival(at_s, name, spec.cpu_s * factor, spec.io_ops * factor)
        return Arrival(
            at_s,
            name,
            spec.cpu_s * factor,
            spec.io_ops * factor,
            submitter.name,
            submitter.priority,
        )


def _shared(scenario: Scenario) -> list[Arrival]:
    """The scenario's own stream; with submitters, each job dealt to one by share."""
    arrivals = scenario.arrivals
    if arrivals is None:
        return []
    rng = random.Random(f"{scenario.seed}/arrivals")
    times = arrival_times(arrivals, scenario.base_rate_per_s(), scenario.duration_s, rng)
    sharing = [s for s in scenario.submitters if s.share is not None]
    if not sharing:
        mix = _Mix(scenario, scenario.job_type_weights())
        return [mix.job(t, rng, None) for t in times]
    dealer = random.Random(f"{scenario.seed}/submitters")
    shares = list(itertools.accumulate(s.share or 0.0 for s in sharing))
    mixes = [_Mix(scenario, scenario.job_type_weights(s)) for s in sharing]
    jobs: list[Arrival] = []
    for t in times:
        i = min(bisect.bisect_right(shares, dealer.random() * shares[-1]), len(sharing) - 1)
        job = mixes[i].job(t, rng, sharing[i])
        if sharing[i].submits_at(t):
            jobs.append(job)
    return jobs


def _own(scenario: Scenario, submitter: Submitter) -> list[Arrival]:
    """A submitter's arrivals of its own, from its own seeded stream."""
    arrivals = submitter.arrivals
    assert arrivals is not None
    rng = random.Random(f"{scenario.seed}/arrivals/{submitter.name}")
    weights = scenario.job_type_weights(submitter)
    rate = scenario.base_rate_per_s(arrivals, weights)
    mix = _Mix(scenario, weights)
    jobs = [
        mix.job(t, rng, submitter) for t in arrival_times(arrivals, rate, scenario.duration_s, rng)
    ]
    return [job for job in jobs if submitter.submits_at(job.at_s)]


def generate(scenario: Scenario) -> list[Arrival]:
    """Every job of the run, in arrival order, from the scenario's seed."""
    jobs = _shared(scenario)
    for submitter in scenario.submitters:
        if submitter.arrivals is not None:
            jobs.extend(_own(scenario, submitter))
    jobs.sort(key=lambda job: job.at_s)  # stable: ties keep the submitters' order
    return jobs
