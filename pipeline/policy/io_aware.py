"""`io-aware` (the default): the paper's rule, fixed where it fails, with power-of-d choices.

Load model (`pipeline.policy.load.projected_io_ops_per_s`), per VM, summed over the host:

    projected_io = Σ over VMs of max(measured_io, load * io_per_job, committed_rate)
    committed_rate = outstanding * io_per_job / max(horizon_s, outstanding / service_rate)

where outstanding = reported + claims, and service_rate = load / busy_fraction (one job at a
time: a queue drains no faster than that, so it never counts as running in parallel).

Filters, in order (the first that fails is recorded as `rejected_by`):

1. `stale`: the host's telemetry is at most `stale_after_s` old (never heard from is stale);
   a silent host is never assumed idle.
2. `over limit`: projected_io < limit (a host without a limit is left to the next filter).
3. `warm-up full`: while a host's limit is unknown, its VM holds fewer than
   `warmup_outstanding_per_vm` jobs.
4. `backlog full` (HAProxy's bounded server queue): the VM holds fewer jobs than it clears in
   `horizon_s` plus its telemetry's age (`filters.backlog_cap_jobs`); excess jobs wait at the
   dispatcher, durably and per type, and go to whichever VM frees first.

Weighers (Nova: each normalised to 0..1 over the compared candidates, multiplied, summed):
relative headroom, (limit - projected) / limit (warm-up VMs: 1 - outstanding / cap), and fewest
outstanding jobs. A VM runs one job at a time, so the tail waits in its queue: of two eligible
VMs, one emptier and one on a freer host, the emptier one wins (the tie of the two weighers
goes to fewer outstanding, `base.best`).

Selection (Mitzenmacher's "How useful is old information?"; Envoy's power of two choices):
walk the type's candidates in a random order, testing each with the filters, until `choices`
eligible ones are found or `probe_limit` were tested; the heaviest wins (ties: fewer
outstanding, then vm_id). Only if no probe was eligible are the remaining candidates scanned,
and `choices` are then drawn from all the eligible ones. So a typical decision tests O(choices)
candidates whatever the fleet size, and comparing two random eligible hosts instead of always
taking the apparent best keeps stale data from herding everyone onto one host.

No eligible candidate: WAITING, with a reason counting backlog full / over limit / stale /
warm-up full.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from pipeline.events import CandidateView
from pipeline.policy.base import (
    Candidate,
    Filter,
    LoadModel,
    Weigher,
    best,
    candidates_for,
    dispatched,
    make_candidate,
    rejected,
    run_filters,
    weigh,
)
from pipeline.policy.decision import Decision, JobRequest
from pipeline.policy.filters import (
    BacklogFilter,
    FreshTelemetryFilter,
    IoLimitFilter,
    WarmupFilter,
)
from pipeline.policy.load import projected_io_ops_per_s
from pipeline.policy.snapshot import FleetSnapshot
from pipeline.policy.waiting import waiting
from pipeline.policy.weighers import FewestOutstandingWeigher, RelativeHeadroomWeigher


def random_order(n: int, rng: random.Random) -> Iterator[int]:
    """Indices 0..n-1 in a uniformly random order, lazily: O(1) time and space per index drawn.

    A sparse Fisher-Yates shuffle: drawing k indices costs O(k), not O(n).
    """
    swapped: dict[int, int] = {}
    for i in range(n):
        j = rng.randrange(i, n)
        picked = swapped.get(j, j)
        swapped[j] = swapped.get(i, i)
        yield picked


class IoAwarePolicy:
    name = "io-aware"

    def __init__(self) -> None:
        self.filters: tuple[Filter, ...] = (
            FreshTelemetryFilter(),
            IoLimitFilter(unknown_limit_passes=True),
            WarmupFilter(),
            BacklogFilter(),
        )
        self.weighers: tuple[Weigher, ...] = (
            RelativeHeadroomWeigher(),
            FewestOutstandingWeigher(),
        )
        #: How this policy judges a host's I/O (also what the live /hosts view shows).
        self.load_model: LoadModel = projected_io_ops_per_s

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision:
        vms = candidates_for(snapshot, job)
        if not vms:
            return rejected(self.name, job)
        config = snapshot.config
        eligible: list[Candidate] = []
        examined: list[CandidateView] = []
        rejections: dict[str, int] = {}
        tested: set[int] = set()

        def test(index: int) -> None:
            tested.add(index)
            candidate = make_candidate(snapshot, vms[index], self.load_model)
            verdict = run_filters(self.filters, candidate, config)
            if verdict is None:
                eligible.append(candidate)
            else:
                rejections[verdict] = rejections.get(verdict, 0) + 1
                if len(examined) < config.max_recorded_candidates:
                    examined.append(candidate.score(eligible=False, rejected_by=verdict))

        order = random_order(len(vms), rng)
        for index in order:
            test(index)
            if len(eligible) >= config.choices or len(tested) >= config.probe_limit:
                break
        mode = "p2c" if config.choices == 2 else f"p{config.choices}c"
        if not eligible:
            # Sampling found nothing: scan the rest, so a few eligible hosts among many full
            # ones are still found (the scan is the rare, expensive path).
            for index in range(len(vms)):
                if index not in tested:
                    test(index)
            if not eligible:
                return waiting(self.name, job, len(tested), rejections, examined)
            if len(eligible) > config.choices:
                eligible = rng.sample(eligible, config.choices)
            mode += f" after scanning {len(tested)}"
        return self._choose(snapshot, eligible, examined, mode, len(tested), rejections)

    def _choose(
        self,
        snapshot: FleetSnapshot,
        eligible: Sequence[Candidate],
        examined: list[CandidateView],
        mode: str,
        tested: int,
        rejections: dict[str, int],
    ) -> Decision:
        config = snapshot.config
        weights = weigh(self.weighers, eligible, config)
        chosen = eligible[best(eligible, weights)]
        # The compared candidates are always recorded; rejected ones only up to the cap.
        examined = examined[: max(0, config.max_recorded_candidates - len(eligible))]
        examined.extend(
            candidate.score(eligible=True, weight=weight)
            for candidate, weight in zip(eligible, weights, strict=True)
        )
        reason = f"{_describe(chosen)} ({mode} of {','.join(c.host.host_id for c in eligible)})"
        return dispatched(self.name, snapshot, chosen, reason, examined, tested, rejections)


def _describe(candidate: Candidate) -> str:
    headroom = candidate.headroom_ops_per_s
    if headroom is None:
        return (
            f"host {candidate.host.host_id} warming up, VM holds {candidate.outstanding_jobs} jobs"
        )
    return f"host {candidate.host.host_id} headroom {headroom:.0f} ops/s"
