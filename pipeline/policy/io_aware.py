"""`io-aware` (the default): a job goes where it fits under its host's I/O limit, soonest done.

The paper sends a job to a host whose I/O, as reported, is under its limit. Reports are a
window behind, and a job's I/O comes in a burst at the time scale of the job (an I/O-heavy job
may ask most of a host's limit for a tenth of a second), so the paper's rule lets two such jobs
meet on one host, and judges a host only before the job, not with it. io-aware judges at the time
scale of a job instead:

- **Demand now** (`pipeline.policy.load.running_io_ops_per_s`): Σ over the host's VMs that hold
  a job of that job's rate, io_per_job over the measured service time. A VM runs one job at a
  time, so a queue adds nothing now; the dispatcher's own placements (claims) count at once.
- **Fit**: a job started on an idle VM adds its own rate; behind a running job it adds nothing.
  It fits if demand now + that <= limit (`filters.FitFilter`). Before io_per_job is known
  (cold start) a job asks the median I/O per busy second of its type's metered VMs; a job of a type none of whose VMs has been metered yet counts as its host's whole
  limit: it runs alone until measured.
- **Hysteresis** (`filters.HysteresisFilter`): a host that went over its limit, by its demand
  or by Dom0's meter, takes nothing until it is back under (1 - hysteresis) x its limit. Of
  the meter, only the I/O the dispatcher's jobs do not explain counts
  (`pipeline.policy.load.unexplained_io_ops_per_s`): the meter is a window behind, and the
  I/O of its own jobs in it is either in the demand now or gone with them.

Filters, in order (the first that fails is recorded as `rejected_by`): `stale` (silence is
never idleness), `at limit (hysteresis)`, `does not fit`, `warm-up full` (the host's limit is
unknown: a trickle), `backlog full` (a VM holds at most what it clears in `horizon_s`; more wait
at the dispatcher and go to whichever VM frees first: late binding, as Sparrow's).

Selection, least expected response first (a job's response is its wait plus its service):

1. **An idle VM where the job fits** (expected response: its service time). Probed in a random
   order among the type's idle VMs (`FleetSnapshot.idle_candidates`) until `choices` eligible
   ones are found or `probe_limit` were tested; of those, the one whose host keeps the most
   relative headroom with the job (then the faster VM) wins: power of d choices, so a decision
   costs O(choices) whatever the fleet size.
2. Else **a busy VM whose host is within its limit**, where the job waits behind
   (outstanding + 1) x service time: `probe_limit` of the type's VMs probed in a random order,
   the least expected response of the eligible ones wins (the counts are the dispatcher's own,
   exact, so more choices help here, where stale reports would make them herd).
3. Else a **scan** of every candidate (the rare, expensive path), then as in 1 or 2.
4. Else, if the job has waited `hold_s` (the strictness) or longer **and the fleet as a whole
   has room for it** (the hosts that serve its type are, summed, under their limits by at
   least its rate), it goes **over a limit**: to the fresh VM with room in its backlog whose
   host it overshoots least (relative to the limit), then the soonest done. Else it **waits**
   at the dispatcher, with a reason counting why each candidate was refused.

So while the offered I/O fits under the fleet's limits, hosts stay under theirs and a job waits
for room at most about `hold_s`: past it, room scattered across hosts in pieces too small for
the job (a packing problem, not a lack of capacity) is worth a brief local overshoot. When the
fleet as a whole is at its limits, excess jobs wait (HAProxy's queue): sending them over the
limits would serve them no sooner, only collapse the hosts they land on.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from pipeline.events import CandidateView
from pipeline.policy.base import (
    Candidate,
    Filter,
    LoadModel,
    candidates_for,
    dispatched,
    rejected,
)
from pipeline.policy.decision import CandidateRecord, Decision, JobRequest
from pipeline.policy.filters import (
    BacklogFilter,
    FitFilter,
    FreshTelemetryFilter,
    HysteresisFilter,
    WarmupFilter,
)
from pipeline.policy.load import (
    capped_at_limit,
    job_io_ops_per_s,
    occupancy,
    running_io_ops_per_s,
    unexplained_io_ops_per_s,
    unmeasured_job_io_ops_per_s,
)
from pipeline.policy.scan import Judged, TypeScan, room_ops_per_s
from pipeline.policy.snapshot import FleetSnapshot, PolicyConfig, VmView
from pipeline.policy.waiting import waiting

#: Filters a job held `hold_s` may ignore when it goes over a limit.
_LIMIT_FILTERS = frozenset({FitFilter.name})


def random_order(n: int, rng: random.Random) -> Iterator[int]:
    """Indices 0..n-1 in a uniformly random order, lazily: O(1) time and space per index drawn.

    A sparse Fisher-Yates shuffle: drawing k indices costs O(k), not O(n).
    """
    swapped: dict[int, int] = {}
    # `rng.randrange(i, n)` is `i + rng._randbelow(n - i)` (CPython's random.py; the same
    # draws, `test_io_aware` holds them equal): without randrange's argument checks, which
    # were a third of a busy fleet's probing.
    below = rng._randbelow
    for i in range(n):
        j = i + below(n - i)
        picked = swapped.get(j, j)
        swapped[j] = swapped.get(i, i)
        yield picked


def fit_candidate(snapshot: FleetSnapshot, vm: VmView) -> Candidate:
    """A candidate with io-aware's numbers: demand now, what the job adds, expected response."""
    host = snapshot.host(vm.host_id)
    outstanding = snapshot.outstanding(vm)
    service_s = snapshot.service_s_estimate(vm)
    added: float | None = 0.0
    if outstanding == 0:
        added = job_io_ops_per_s(snapshot, vm)
        if added is None and host.limit_ops_per_s is not None:
            added = unmeasured_job_io_ops_per_s(snapshot, vm)
        if added is not None:
            added = capped_at_limit(snapshot, vm, added)
    return Candidate(
        vm=vm,
        host=host,
        total_io_ops_per_s=running_io_ops_per_s(snapshot, host),
        telemetry_age_s=snapshot.telemetry_age_s(host),
        telemetry_behind_s=snapshot.telemetry_behind_s(host),
        outstanding_jobs=outstanding,
        job_io_ops_per_s=added,
        expected_response_s=None if service_s is None else (outstanding + 1) * service_s,
        service_s=service_s,
        measured_io=unexplained_io_ops_per_s(snapshot, host),
    )


def headroom_after(candidate: Candidate) -> float:
    """(limit - demand now - what the job adds) / limit; a warm-up host counts as empty."""
    limit = candidate.limit_ops_per_s
    if limit is None or limit <= 0:
        return 1.0
    return (limit - candidate.total_io_ops_per_s - (candidate.job_io_ops_per_s or 0.0)) / limit


def fleet_room_ops_per_s(candidates: Iterable[Candidate]) -> float:
    """Σ over the candidates' distinct hosts of `room_ops_per_s` (limit - the worse of demand
    now and Dom0's whole meter, at least 0): the room under the limits these hosts have
    together. Hosts without a limit count none."""
    room: dict[str, float] = {}
    for candidate in candidates:
        host_room = room_ops_per_s(candidate)
        if host_room is not None:
            room[candidate.host.host_id] = host_room
    return sum(room.values())


def _soonest(candidate: Candidate) -> float:
    response = candidate.expected_response_s
    return math.inf if response is None else response


def _start_order(candidate: Candidate) -> tuple[float, float, str]:
    """Where a job that fits starts first: the most relative headroom left with the job, then
    the faster VM, then the VM's id."""
    return (-round(headroom_after(candidate), 9), _soonest(candidate), candidate.vm.vm_id)


def _queue_order(candidate: Candidate) -> tuple[float, float, str]:
    """Where a job queues first: the soonest done, then the most headroom, then the VM's id."""
    return (_soonest(candidate), -headroom_after(candidate), candidate.vm.vm_id)


def _kept_start_order(candidate: Candidate) -> tuple[float, float, str]:
    # A busy fleet's decisions compare the same kept candidates (`_judge`) again and again.
    return candidate.memo("io-aware start order", _start_order)


def _kept_queue_order(candidate: Candidate) -> tuple[float, float, str]:
    return candidate.memo("io-aware queue order", _queue_order)


_START_ORDER = operator.attrgetter("start_order")
_QUEUE_ORDER = operator.attrgetter("queue_order")


def overflow_order(candidate: Candidate) -> tuple[float, float, str]:
    """Where a job held past `hold_s` goes first: the host it overshoots least (relative to
    the limit), then the soonest done, then the VM's id."""
    return (-headroom_after(candidate), _soonest(candidate), candidate.vm.vm_id)


@dataclass
class _Search:
    """What one decision has tested so far."""

    eligible: list[Candidate]
    #: Refused only by the limit (fit or hysteresis): where a job held `hold_s` may go.
    over_limit: list[Candidate]
    #: Refused candidates to record (up to the cap), with the filter that refused each; turned
    #: into `CandidateView`s only for the decision's record.
    refused: list[tuple[Candidate, str]]
    rejections: dict[str, int]
    tested: set[str]
    #: Every fresh candidate tested, eligible or not (the fleet's room is summed over their
    #: hosts; a stale host's is unknown and takes no job anyway).
    tested_candidates: list[Candidate] = field(default_factory=list)
    #: VMs judged by the type's scan (`pipeline.policy.scan`), when the decision used it.
    scanned: int = 0
    #: The verdicts of `eligible`, in its order, while it holds only the VMs the probes found
    #: eligible (None once it was set otherwise): their orders are computed already.
    eligible_judged: list[Judged] | None = field(default_factory=list)

    def tested_count(self) -> int:
        return max(len(self.tested), self.scanned)

    def record(self, cap: int, compared: Sequence[Candidate] = ()) -> CandidateRecord:
        """The decision's record, built when read: refused candidates up to the cap (less the
        compared ones, which are always recorded), then the compared ones."""
        refused = self.refused[: max(0, cap - len(compared))]
        chosen = list(compared)

        def build() -> list[CandidateView]:
            views = [c.score(eligible=False, rejected_by=why) for c, why in refused]
            views.extend(c.score(eligible=True) for c in chosen)
            return views

        return CandidateRecord(build)


class IoAwarePolicy:
    name = "io-aware"

    def __init__(self) -> None:
        self.hysteresis = HysteresisFilter()
        self.filters: tuple[Filter, ...] = (
            FreshTelemetryFilter(),
            self.hysteresis,
            FitFilter(),
            WarmupFilter(),
            BacklogFilter(),
        )
        #: How this policy judges a host's I/O (also what the live /hosts view shows).
        self.load_model: LoadModel = running_io_ops_per_s
        # Per policy instance: the hysteresis state behind its verdicts is this instance's.
        self._judged_key = ("io-aware judged", id(self))
        self._states_key = ("io-aware judged by state", id(self))

    def make_candidate(self, snapshot: FleetSnapshot, vm: VmView) -> Candidate:
        """The candidate this policy judges (also what the live /hosts view judges)."""
        return fit_candidate(snapshot, vm)

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision:
        vms = candidates_for(snapshot, job)
        if not vms:
            return rejected(self.name, job)
        config = snapshot.config
        search = _Search([], [], [], {}, set())
        mode = "p2c" if config.choices == 2 else f"p{config.choices}c"
        # The type's scan on this snapshot, if a decision made one: its verdicts stand in for
        # judging a VM again (the same answer, at the cost of a lookup).
        scan = snapshot.memoized(self._scan_key(job.job_type))
        if scan is not None:
            assert isinstance(scan, TypeScan)
            scan.refresh()

        # 1. An idle VM where the job fits.
        idle: Sequence[VmView] = snapshot.idle_candidates(job.job_type)
        if job.avoid and len(vms) < len(snapshot.candidates(job.job_type)):
            idle = [vm for vm in idle if vm.vm_id not in job.avoid]
        for index in random_order(len(idle), rng):
            self._test(snapshot, idle[index], search, config, scan)
            if len(search.eligible) >= config.choices or len(search.tested) >= config.probe_limit:
                break
        if search.eligible:
            return self._start(snapshot, search, f"idle VM, {mode}")

        # 2. A busy VM on a host within its limit, soonest done of `probe_limit` probed.
        probes = 0
        for index in random_order(len(vms), rng):
            if probes >= config.probe_limit:
                break
            if vms[index].vm_id in search.tested:
                continue
            probes += 1
            self._test(snapshot, vms[index], search, config, scan)
            if search.eligible and search.eligible[-1].outstanding_jobs <= 1:
                break  # only its running job ahead: no busy VM can do better
        scan_index: TypeScan | None = None
        if not search.eligible:
            # 3. Nothing among the probes: judge the rest, so a few eligible hosts among many
            # full ones are still found. Every VM of the type, judged once per snapshot and
            # re-judged only where a claim landed since (`pipeline.policy.scan`): while the
            # fleet is at its limits every retry comes here, and a fresh scan each time would
            # cost O(fleet) per decision.
            if len(vms) == len(snapshot.candidates(job.job_type)):
                scan_index = scan or self._scan(snapshot, job.job_type, vms)
                search.eligible = scan_index.eligible()
                search.eligible_judged = None
                search.rejections = dict(scan_index.rejections)
                for refused in scan_index.refused(search.tested):
                    if len(search.refused) >= config.max_recorded_candidates:
                        break
                    search.refused.append(refused)
                search.scanned = tested = len(scan_index)
            else:  # some VMs are to be avoided: judge the others afresh (a rare path)
                for vm in vms:
                    if vm.vm_id not in search.tested:
                        self._test(snapshot, vm, search, config, scan)
                tested = len(search.tested)
            mode = f"after scanning {tested}"
        else:
            mode = f"{probes} probed"
        if search.eligible:
            idle_fits = [c for c in search.eligible if c.outstanding_jobs == 0]
            if idle_fits:
                if len(idle_fits) > config.choices:
                    idle_fits = rng.sample(idle_fits, config.choices)
                search.eligible = idle_fits
                search.eligible_judged = None
                return self._start(snapshot, search, f"idle VM, {mode}")
            return self._queue(snapshot, search, f"behind a running job, best of {mode}")

        # 4. Nowhere under a limit: hold the job, or after `hold_s` send it over one if the
        # fleet as a whole has room for it.
        waited_s = job.waited_s
        if waited_s >= config.hold_s:
            if scan_index is not None:
                chosen = scan_index.best_over_limit()
            else:
                chosen = min(search.over_limit, key=overflow_order, default=None)
            # A job nobody has measured yet is never sent over a limit: its cost is unknown.
            rate = None if chosen is None else job_io_ops_per_s(snapshot, chosen.vm)
            if chosen is not None and rate is not None:
                rate = capped_at_limit(snapshot, chosen.vm, rate)  # as the fit test counts it
                if scan_index is not None:
                    room = scan_index.room_ops_per_s()
                else:
                    room = fleet_room_ops_per_s(search.tested_candidates)
                if room >= rate:
                    return self._overflow(snapshot, search, chosen, waited_s, room, config)
        views = search.record(config.max_recorded_candidates)
        return waiting(self.name, job, search.tested_count(), search.rejections, views)

    # --- the steps --------------------------------------------------------------------------

    def _scan_key(self, job_type: str) -> tuple[str, int, str]:
        # Per policy instance: the hysteresis state behind its verdicts is this instance's.
        return ("io-aware type scan", id(self), job_type)

    def _scan(self, snapshot: FleetSnapshot, job_type: str, vms: Sequence[VmView]) -> TypeScan:
        """The type's scan on this snapshot: built by judging every VM (once per snapshot), kept
        in the snapshot's memo; it re-judges itself where claims land (`TypeScan.refresh`)."""
        config = snapshot.config
        return snapshot.memo(
            self._scan_key(job_type),
            lambda: TypeScan(
                snapshot, vms, lambda vm: self._judge(snapshot, vm, config), overflow_order
            ),
        )

    def _judge(self, snapshot: FleetSnapshot, vm: VmView, config: PolicyConfig) -> Judged:
        """The VM as judged on this snapshot: once, until a claim lands on it or changes its
        host's occupancy (`FleetSnapshot.vm_memo`).

        A verdict depends only on the snapshot, the VM's own count and its host's occupancy:
        the host's demand now and the unexplained part of its meter count each VM's job only
        by whether it holds one (`pipeline.policy.load`); the VM's backlog, expected response
        and what the job adds are its own. So the probes of later decisions on the same
        snapshot reuse it: at full load a decision probes `probe_limit` busy VMs, and judging
        each afresh was most of its cost; a placement behind a running job leaves the other
        VMs of its host as they were judged (`benchmarks/dispatch_cost.py`)."""
        judged = snapshot.vm_memoized(vm.vm_id, self._judged_key)
        if judged is None:  # not judged since its VM's last change (no closure built on a hit)
            return snapshot.vm_memo(
                vm.vm_id, self._judged_key, lambda: self._judge_in_state(snapshot, vm, config)
            )
        assert isinstance(judged, Judged)
        return judged

    def _judge_in_state(self, snapshot: FleetSnapshot, vm: VmView, config: PolicyConfig) -> Judged:
        """The VM judged afresh, or as it was judged earlier on this snapshot in the same state.

        Where jobs complete, a placement and its completion give back the host they found, but
        each drops the host's verdicts (`_judge`): most VMs would be judged afresh again and
        again in states seen before. A judge reads of what claims and ends change only the
        VM's own count, its host's occupancy (`pipeline.policy.load.occupancy`) and whether
        the hysteresis filter holds the host closed, which is also the one thing it changes: so
        a verdict kept by that state, with the filter's state it left, is what a fresh judge
        would say and do (`tests/unit/pipeline/policy/test_scan.py` decides over both)."""
        host = snapshot.host(vm.host_id)
        closed = self.hysteresis.closed
        state = (
            vm.vm_id,
            snapshot.outstanding(vm),
            occupancy(snapshot, host),
            host.host_id in closed,
        )
        seen = snapshot.memo(self._states_key, dict)
        found = seen.get(state)
        if found is not None:
            judged, closes = found
            if closes:
                closed.add(host.host_id)
            else:
                closed.discard(host.host_id)
            return judged
        judged = self._judge_afresh(snapshot, vm, config)
        seen[state] = (judged, host.host_id in closed)
        return judged

    def _judge_afresh(self, snapshot: FleetSnapshot, vm: VmView, config: PolicyConfig) -> Judged:
        candidate = fit_candidate(snapshot, vm)
        verdict = None
        only_the_limit = True  # refused by nothing but the limit filters (so far)
        for check in self.filters:
            if check.host_passes(candidate, config).passes:
                continue
            if verdict is None:
                verdict = check.name
            if check.name not in _LIMIT_FILTERS:
                only_the_limit = False
                break
        fresh = verdict != FreshTelemetryFilter.name
        if verdict is None:
            return Judged(
                candidate,
                None,
                True,
                fresh,
                _kept_start_order(candidate),
                _kept_queue_order(candidate),
            )
        return Judged(candidate, verdict, only_the_limit, fresh)

    def _test(
        self,
        snapshot: FleetSnapshot,
        vm: VmView,
        search: _Search,
        config: PolicyConfig,
        scan: TypeScan | None,
    ) -> None:
        search.tested.add(vm.vm_id)
        judged = None if scan is None else scan.result(vm.vm_id)
        if judged is None:
            judged = self._judge(snapshot, vm, config)
        candidate, verdict = judged.candidate, judged.verdict
        if judged.fresh:
            search.tested_candidates.append(candidate)
        if verdict is None:
            search.eligible.append(candidate)
            if search.eligible_judged is not None:
                search.eligible_judged.append(judged)
            return
        search.rejections[verdict] = search.rejections.get(verdict, 0) + 1
        if judged.only_the_limit:
            search.over_limit.append(candidate)
        if len(search.refused) < config.max_recorded_candidates:
            search.refused.append((candidate, verdict))

    def _start(self, snapshot: FleetSnapshot, search: _Search, mode: str) -> Decision:
        judged = search.eligible_judged
        if judged is not None and judged and judged[0].start_order is not None:
            chosen = min(judged, key=_START_ORDER).candidate
        else:
            chosen = min(search.eligible, key=_kept_start_order)
        headroom = headroom_after(chosen)
        reason = (
            f"host {chosen.host.host_id} fits the job "
            f"({chosen.job_io_ops_per_s or 0:.0f} ops/s, {headroom:.0%} of its limit left; {mode})"
        )
        return self._record(snapshot, search, chosen, reason)

    def _queue(self, snapshot: FleetSnapshot, search: _Search, mode: str) -> Decision:
        judged = search.eligible_judged
        if judged is not None and judged and judged[0].queue_order is not None:
            chosen = min(judged, key=_QUEUE_ORDER).candidate
        else:
            chosen = min(search.eligible, key=_kept_queue_order)
        response = _soonest(chosen)
        reason = (
            f"VM {chosen.vm.vm_id} holds {chosen.outstanding_jobs} jobs, "
            f"done in ~{response:.2f}s; host {chosen.host.host_id} within its limit ({mode})"
        )
        return self._record(snapshot, search, chosen, reason)

    def _overflow(
        self,
        snapshot: FleetSnapshot,
        search: _Search,
        chosen: Candidate,
        waited_s: float,
        room: float,
        config: PolicyConfig,
    ) -> Decision:
        reason = (
            f"held {waited_s:.2f}s >= hold_s {config.hold_s:g}s, no host has room alone, the "
            f"fleet {room:.0f} ops/s: host {chosen.host.host_id} overshoots least "
            f"({-headroom_after(chosen):.0%} over)"
        )
        search.eligible = [chosen]
        search.eligible_judged = None
        return self._record(snapshot, search, chosen, reason)

    def _record(
        self, snapshot: FleetSnapshot, search: _Search, chosen: Candidate, reason: str
    ) -> Decision:
        examined = search.record(snapshot.config.max_recorded_candidates, search.eligible)
        tested = search.tested_count()
        return dispatched(self.name, snapshot, chosen, reason, examined, tested, search.rejections)
