"""Weighers: how good a candidate is, as a raw number where larger is better.

`pipeline.policy.base.weigh` normalises each weigher's numbers to 0..1 over the candidates
compared and multiplies by the weigher's multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.policy.base import Candidate
from pipeline.policy.snapshot import PolicyConfig


def relative_headroom(candidate: Candidate, config: PolicyConfig) -> float:
    """(limit - total) / limit for a host with a known limit; warm-up hosts by their VM's load.

    A warm-up VM counts 1 - outstanding / cap: an idle one is as attractive as an idle host, a
    nearly full one as a nearly full host. Relative (not absolute) headroom so a big host is not
    always preferred to a small one with the same fraction free.
    """
    limit = candidate.limit_ops_per_s
    if limit is None:
        return 1.0 - candidate.outstanding_jobs / config.warmup_outstanding_per_vm
    return (limit - candidate.total_io_ops_per_s) / limit


@dataclass(frozen=True)
class RelativeHeadroomWeigher:
    name: str = "relative headroom"
    multiplier: float = 1.0

    def weigh(self, candidate: Candidate, config: PolicyConfig) -> float:
        return relative_headroom(candidate, config)


@dataclass(frozen=True)
class FewestOutstandingWeigher:
    """Fewer jobs outstanding (reported plus claimed) is better."""

    name: str = "fewest outstanding"
    multiplier: float = 1.0

    def weigh(self, candidate: Candidate, config: PolicyConfig) -> float:
        return -float(candidate.outstanding_jobs)


@dataclass(frozen=True)
class GuestIdleWeigher:
    """A less busy guest is better: what a balancer inside the guests can see."""

    name: str = "guest idle"
    multiplier: float = 1.0

    def weigh(self, candidate: Candidate, config: PolicyConfig) -> float:
        return -candidate.vm.busy_fraction
