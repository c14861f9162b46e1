"""Dispatch policies: pure functions over a fleet snapshot (the paper's Table 3, and beyond).

The live dispatcher (`pipeline.dispatch`) and the simulator (`benchmarks.sim`) call the same
code. Modules, one job each:

    snapshot    VmView, HostView, PolicyConfig, FleetSnapshot (index + claims)
    decision    JobRequest, Outcome, Decision (candidates are `pipeline.events.CandidateView`)
    load        the I/O formulas (paper total, projected total)
    base        Candidate, Filter, Weigher, Policy and the helpers that compose them
    filters     stale telemetry, I/O limit, known limit, warm-up
    weighers    relative headroom, fewest outstanding, guest idle
    io_aware    the default policy; paper: the literal rule; baselines: the rest
    registry    policies by name
"""

from pipeline.events import CandidateView
from pipeline.policy.base import Policy
from pipeline.policy.decision import Decision, JobRequest, Outcome
from pipeline.policy.registry import DEFAULT_POLICY, POLICY_NAMES, build_policies, build_policy
from pipeline.policy.snapshot import FleetSnapshot, HostView, PolicyConfig, VmView

__all__ = [
    "DEFAULT_POLICY",
    "POLICY_NAMES",
    "CandidateView",
    "Decision",
    "FleetSnapshot",
    "HostView",
    "JobRequest",
    "Outcome",
    "Policy",
    "PolicyConfig",
    "VmView",
    "build_policies",
    "build_policy",
]
