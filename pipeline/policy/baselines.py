"""Baselines that ignore the host's I/O: what the paper and vmlb are measured against.

None of them filters, so none ever answers WAITING: with at least one VM serving the type, the
job is dispatched; with none, it is REJECTED. Each records the candidates it compared (capped).

- `round-robin`: per job type, the next candidate in (host_id, vm_id) order. The cursor is the
  policy instance's only state, so one instance per dispatcher, deterministic.
- `random`: uniform among the candidates (the injected rng).
- `least-outstanding`: fewest outstanding jobs, reported plus claimed (ties: vm_id). A queue
  length balancer: it sees queues, not the host's I/O channel behind them.
- `guest-util`: lowest busy_fraction, what a guest sees of itself (ties: fewest outstanding,
  then vm_id). The paper's foil: a guest waiting on a saturated host's I/O looks busy only in
  proportion; an idle guest on a saturated host looks perfect.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from pipeline.policy.base import (
    Weigher,
    candidates_for,
    dispatched,
    make_candidate,
    no_io,
    rejected,
    weigh,
)
from pipeline.policy.decision import Decision, JobRequest
from pipeline.policy.snapshot import FleetSnapshot, VmView
from pipeline.policy.weighers import FewestOutstandingWeigher, GuestIdleWeigher


class RoundRobinPolicy:
    name = "round-robin"

    def __init__(self) -> None:
        self._cursor: dict[str, int] = {}

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision:
        vms = candidates_for(snapshot, job)
        if not vms:
            return rejected(self.name, job)
        position = self._cursor.get(job.job_type, 0) % len(vms)
        self._cursor[job.job_type] = position + 1
        chosen = make_candidate(snapshot, vms[position], no_io)
        reason = f"round robin: candidate {position + 1} of {len(vms)}"
        return dispatched(self.name, snapshot, chosen, reason, [chosen.score(eligible=True)])


class RandomPolicy:
    name = "random"

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision:
        vms = candidates_for(snapshot, job)
        if not vms:
            return rejected(self.name, job)
        chosen = make_candidate(snapshot, vms[rng.randrange(len(vms))], no_io)
        reason = f"uniform random among {len(vms)}"
        return dispatched(self.name, snapshot, chosen, reason, [chosen.score(eligible=True)])


class _LowestKeyPolicy:
    """Picks the candidate with the lowest key, scanning all (O(n): a baseline, not a goal)."""

    name: str
    weighers: tuple[Weigher, ...]

    def key(self, snapshot: FleetSnapshot) -> Callable[[VmView], tuple[Any, ...]]:
        raise NotImplementedError

    def describe(self, vm: VmView, snapshot: FleetSnapshot) -> str:
        raise NotImplementedError

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision:
        vms = candidates_for(snapshot, job)
        if not vms:
            return rejected(self.name, job)
        config = snapshot.config
        # The keys order the candidates exactly as the weighers plus `best` would; computing
        # them on the plain VM records keeps the full scan cheap, and the recorded best few are
        # then weighed properly.
        top = heapq.nsmallest(config.max_recorded_candidates, vms, key=self.key(snapshot))
        compared = [make_candidate(snapshot, vm, no_io) for vm in top]
        weights = weigh(self.weighers, compared, config)
        chosen = compared[0]
        examined = [
            candidate.score(eligible=True, weight=weight)
            for candidate, weight in zip(compared, weights, strict=True)
        ]
        reason = f"{self.describe(chosen.vm, snapshot)} (lowest of {len(vms)})"
        return dispatched(self.name, snapshot, chosen, reason, examined)


class LeastOutstandingPolicy(_LowestKeyPolicy):
    name = "least-outstanding"
    weighers = (FewestOutstandingWeigher(),)

    def key(self, snapshot: FleetSnapshot) -> Callable[[VmView], tuple[Any, ...]]:
        return lambda vm: (snapshot.outstanding(vm), vm.vm_id)

    def describe(self, vm: VmView, snapshot: FleetSnapshot) -> str:
        return f"VM {vm.vm_id} holds {snapshot.outstanding(vm)} jobs"


class GuestUtilPolicy(_LowestKeyPolicy):
    name = "guest-util"
    weighers = (GuestIdleWeigher(),)

    def key(self, snapshot: FleetSnapshot) -> Callable[[VmView], tuple[Any, ...]]:
        return lambda vm: (vm.busy_fraction, snapshot.outstanding(vm), vm.vm_id)

    def describe(self, vm: VmView, snapshot: FleetSnapshot) -> str:
        return f"VM {vm.vm_id} busy {vm.busy_fraction:.0%}"
