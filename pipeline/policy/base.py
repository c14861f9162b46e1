"""The building blocks of every policy: candidates, filters, weighers, and the Policy protocol.

Borrowed from OpenStack Nova's scheduler: a filter says yes or no about one candidate (and, here,
why not); a weigher gives a raw number, each weigher's numbers are normalised to 0..1 over the
candidates compared, multiplied by the weigher's multiplier and summed; a policy is a named
composition of them. Policies are pure: everything comes in through the snapshot, the job and an
injected random generator, and `decide()` claims its placement in the snapshot.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pipeline.events import CandidateView, trusted
from pipeline.policy.decision import Decision, JobRequest, Outcome, record
from pipeline.policy.snapshot import FleetSnapshot, HostView, PolicyConfig, VmView

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One VM with the numbers filters and weighers judge it by (computed once per decision)."""

    vm: VmView
    host: HostView
    #: The host's I/O rate as the policy's load model estimates it.
    total_io_ops_per_s: float
    #: Wall-clock age of the host's newest telemetry.
    telemetry_age_s: float | None
    #: How far it is behind the fleet's newest telemetry (the watermark).
    telemetry_behind_s: float | None
    #: Reported outstanding jobs plus local claims.
    outstanding_jobs: int
    #: What this job would add to the host's I/O demand now (its rate if the VM is idle, 0 if
    #: it queues behind a running job; None: unknown). Only policies that judge fit set it.
    job_io_ops_per_s: float | None = None
    #: Seconds until this job would be done there, as the policy expects (None: not judged).
    expected_response_s: float | None = None
    #: The VM's service time as the policy estimates it (None: not judged, or unknown).
    service_s: float | None = None
    #: The host's I/O rate as Dom0 measured it, or the part of it the policy counts (io-aware:
    #: what its jobs do not explain); None: the whole meter, from the host view.
    measured_io: float | None = None
    #: `score()`'s records, built once per candidate: a candidate judged once per snapshot
    #: (io-aware's probes, `pipeline.policy.scan`) is recorded by many decisions.
    _views: dict[tuple[bool, str | None, float | None], CandidateView] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: What a policy derives from the candidate alone (its numbers never change), kept for the
    #: decisions that compare it again (see `memo`).
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def memo(self, name: str, compute: Callable[[Candidate], T]) -> T:
        """`compute(self)` once per candidate (e.g. the order io-aware compares it by)."""
        found = self._memo.get(name)
        if found is None:
            found = self._memo[name] = compute(self)
        return found  # type: ignore[no-any-return]

    @property
    def measured_io_ops_per_s(self) -> float:
        return self.host.measured_io_ops_per_s if self.measured_io is None else self.measured_io

    @property
    def limit_ops_per_s(self) -> float | None:
        return self.host.limit_ops_per_s

    @property
    def headroom_ops_per_s(self) -> float | None:
        limit = self.host.limit_ops_per_s
        return None if limit is None else limit - self.total_io_ops_per_s

    def score(
        self, eligible: bool, rejected_by: str | None = None, weight: float | None = None
    ) -> CandidateView:
        # Built from this decision's own numbers: no validation needed (model_construct). The
        # record is shared by every decision that reads it, so nobody may change it.
        key = (eligible, rejected_by, weight)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = self._view(eligible, rejected_by, weight)
        return view

    def _view(self, eligible: bool, rejected_by: str | None, weight: float | None) -> CandidateView:
        return trusted(
            CandidateView,
            vm_id=self.vm.vm_id,
            host_id=self.host.host_id,
            total_io_ops_per_s=self.total_io_ops_per_s,
            limit_ops_per_s=self.host.limit_ops_per_s,
            headroom_ops_per_s=self.headroom_ops_per_s,
            outstanding_jobs=self.outstanding_jobs,
            telemetry_age_s=self.telemetry_age_s,
            telemetry_behind_s=self.telemetry_behind_s,
            eligible=eligible,
            rejected_by=rejected_by,
            weight=weight,
            job_io_ops_per_s=self.job_io_ops_per_s,
            expected_response_s=self.expected_response_s,
        )


#: How a policy estimates a host's I/O rate (see `pipeline.policy.load`).
LoadModel = Callable[[FleetSnapshot, HostView], float]


def make_candidate(snapshot: FleetSnapshot, vm: VmView, load_model: LoadModel) -> Candidate:
    host = snapshot.host(vm.host_id)
    return Candidate(
        vm=vm,
        host=host,
        total_io_ops_per_s=load_model(snapshot, host),
        telemetry_age_s=snapshot.telemetry_age_s(host),
        telemetry_behind_s=snapshot.telemetry_behind_s(host),
        outstanding_jobs=snapshot.outstanding(vm),
    )


def no_io(snapshot: FleetSnapshot, host: HostView) -> float:
    """The load model of policies that ignore I/O: report the measured rate, judge nothing."""
    return host.measured_io_ops_per_s


class Verdict:
    """Whether a filter passes a candidate, and why not (or a short note why yes).

    The reason may be a `str.format` template with its arguments, formatted only when read:
    most verdicts pass and nobody reads why (io-aware judges every probed VM; formatting the
    numbers of a passing verdict was a third of a filter's cost)."""

    __slots__ = ("_args", "_reason", "passes")

    def __init__(self, passes: bool, reason: str, *args: object) -> None:
        self.passes = passes
        self._reason = reason
        self._args = args

    @property
    def reason(self) -> str:
        return self._reason.format(*self._args) if self._args else self._reason

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return (self.passes, self.reason) == (other.passes, other.reason)

    def __hash__(self) -> int:
        return hash((self.passes, self.reason))

    def __repr__(self) -> str:
        return f"Verdict({self.passes!r}, {self.reason!r})"


class Filter(Protocol):
    """Says whether one candidate may take the job (Nova's `host_passes`)."""

    #: Recorded as `rejected_by` and counted in a waiting decision's reason.
    name: str

    def host_passes(self, candidate: Candidate, config: PolicyConfig) -> Verdict: ...


class Weigher(Protocol):
    """Says how good a candidate is: a raw number, larger is better."""

    name: str
    multiplier: float

    def weigh(self, candidate: Candidate, config: PolicyConfig) -> float: ...


def run_filters(
    filters: Sequence[Filter], candidate: Candidate, config: PolicyConfig
) -> str | None:
    """The name of the first filter that rejects the candidate, or None if all pass."""
    for check in filters:
        if not check.host_passes(candidate, config).passes:
            return check.name
    return None


def normalise(values: Sequence[float]) -> list[float]:
    """Min-max to 0..1, as Nova does; all equal gives all 0 (no weigher may decide then)."""
    low, high = min(values), max(values)
    if high == low:
        return [0.0] * len(values)
    return [(value - low) / (high - low) for value in values]


def weigh(
    weighers: Sequence[Weigher], candidates: Sequence[Candidate], config: PolicyConfig
) -> list[float]:
    """Σ over weighers of multiplier * normalised raw weight, per candidate."""
    totals = [0.0] * len(candidates)
    for weigher in weighers:
        raw = [weigher.weigh(candidate, config) for candidate in candidates]
        for i, value in enumerate(normalise(raw)):
            totals[i] += weigher.multiplier * value
    return totals


def best(candidates: Sequence[Candidate], weights: Sequence[float]) -> int:
    """Index of the heaviest candidate; ties go to fewer outstanding jobs, then the lower vm_id."""
    return min(
        range(len(candidates)),
        key=lambda i: (-weights[i], candidates[i].outstanding_jobs, candidates[i].vm.vm_id),
    )


class Policy(Protocol):
    """A named dispatch rule. `decide()` claims its placement in the snapshot on DISPATCHED.

    No clock reads, no I/O, no global state: time is the snapshot's `taken_at`, randomness the
    injected `rng`.
    """

    name: str

    def decide(self, snapshot: FleetSnapshot, job: JobRequest, rng: random.Random) -> Decision: ...


def candidates_for(snapshot: FleetSnapshot, job: JobRequest) -> Sequence[VmView]:
    """The VMs serving the job's type, without those it should avoid unless none else serves."""
    vms = snapshot.candidates(job.job_type)
    if job.avoid:
        others = [vm for vm in vms if vm.vm_id not in job.avoid]
        if others:
            return others
    return vms


def rejected(policy: str, job: JobRequest) -> Decision:
    return Decision(
        outcome=Outcome.REJECTED,
        vm_id=None,
        host_id=None,
        reason=f"no VM serves job type {job.job_type!r}",
        candidates=(),
        policy=policy,
    )


def dispatched(
    policy: str,
    snapshot: FleetSnapshot,
    chosen: Candidate,
    reason: str,
    examined: Sequence[CandidateView],
    tested: int = 0,
    refused: dict[str, int] | None = None,
) -> Decision:
    snapshot.claim(chosen.vm.vm_id)
    return Decision(
        outcome=Outcome.DISPATCHED,
        vm_id=chosen.vm.vm_id,
        host_id=chosen.host.host_id,
        reason=reason,
        candidates=record(examined),
        policy=policy,
        tested=tested or len(examined),
        refused=tuple((refused or {}).items()),
    )
