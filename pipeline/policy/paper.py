"""`paper`: the literal dispatch rule of Oh, Kim and Eom (Table 3), as the reference.

    total_io[host] = Σ load[vm] * io_per_job[vm]        (a VM with unknown io_per_job counts 0)
    a job may go to a host only if total_io[host] < limit[host]

Filters: known limit (the paper measures every limit at setup, so a host without one is
ineligible here), then `total_io < limit`. No weighers: the paper's loop walks the hosts in
order and sends the job to the first one that passes, so this takes the first fit in host_id
order (then vm_id within a host).

Kept literal on purpose, flaws included: there is no staleness check (a silent host keeps its
last load forever) and placements since the last report are not counted (the paper has no
claims), so a burst between two reports all lands on the first host that looked free: it herds.
`decide()` still records each placement as a claim, which this policy then ignores.
"""

from __future__ import annotations

import random

from pipeline.events import CandidateView
from pipeline.policy.base import (
    Filter,
    LoadModel,
    candidates_for,
    dispatched,
    make_candidate,
    rejected,
    run_filters,
)
from pipeline.policy.decision import Decision, JobRequest
from pipeline.policy.filters import IoLimitFilter, KnownLimitFilter
from pipeline.policy.load import paper_total_io_ops_per_s
from pipeline.policy.snapshot import FleetSnapshot
from pipeline.policy.waiting import waiting


class PaperPolicy:
    name = "paper"

    def __init__(self) -> None:
        self.filters: tuple[Filter, ...] = (KnownLimitFilter(), IoLimitFilter())
        #: How this policy judges a host's I/O (also what the live /hosts view shows).
        self.load_model: LoadModel = paper_total_io_ops_per_s

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision:
        vms = candidates_for(snapshot, job)
        if not vms:
            return rejected(self.name, job)
        cap = snapshot.config.max_recorded_candidates
        examined: list[CandidateView] = []
        rejections: dict[str, int] = {}
        for vm in vms:
            candidate = make_candidate(snapshot, vm, self.load_model)
            verdict = run_filters(self.filters, candidate, snapshot.config)
            if verdict is None:
                # Keep the chosen one even when the record is full: it is the point of the record.
                if len(examined) >= cap:
                    examined.pop()
                examined.append(candidate.score(eligible=True))
                skipped = sum(rejections.values())
                reason = (
                    f"first fit: host {candidate.host.host_id} total "
                    f"{candidate.total_io_ops_per_s:.0f} < limit {candidate.limit_ops_per_s:.0f} ops/s"
                    + (f" ({skipped} candidates before it ineligible)" if skipped else "")
                )
                tested = skipped + 1
                return dispatched(
                    self.name, snapshot, candidate, reason, examined, tested, rejections
                )
            rejections[verdict] = rejections.get(verdict, 0) + 1
            if len(examined) < cap:
                examined.append(candidate.score(eligible=False, rejected_by=verdict))
        return waiting(self.name, job, len(vms), rejections, examined)
