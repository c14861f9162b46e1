"""Every VM of one job type judged once per snapshot, re-judged only where a claim has landed.

io-aware's last resort, when its random probes found no VM that may take a job, is to judge
every VM of the type: a few eligible hosts among many full ones must still be found. While the
fleet is at its limits that is every decision: each completion frees a little room and triggers
a retry of each waiting queue's head, and each retry would judge the whole fleet again, O(fleet)
per decision (at 10,000 hosts, most of a second).

A verdict depends only on the snapshot and on the VM's host (the jobs on its VMs, claims
included); the other inputs (telemetry ages, the type's job rate and service time) are fixed
for the snapshot's life. So within one snapshot a verdict stays right until a claim or a job's
end lands on the VM's host (`FleetSnapshot.hosts_claimed_since`; finer, the policy's own memo
of a verdict outlives a claim behind a running job on a neighbour: `FleetSnapshot.vm_memo`).
`TypeScan` keeps every verdict of a type,
re-judges only the VMs of hosts claimed since it last looked, and keeps what a decision needs
of the whole scan current as it does: the eligible VMs, those refused only by the limit (where
a job held `hold_s` may go), the refusals by reason, and the room the type's fresh hosts have
under their limits together. A decision over it costs O(hosts claimed since), not O(fleet).

The judging itself is the policy's (`Judge`); this module only remembers its answers. The one
state a judge keeps across calls, the hysteresis filter's closed hosts, changes only with a
host's numbers: judging an unchanged host again gives the same verdict, so a remembered one is
what a fresh scan would say.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from pipeline.policy.base import Candidate
from pipeline.policy.snapshot import FleetSnapshot, VmView


class Judged(NamedTuple):
    """One VM as judged: the candidate, the first filter that refused it (None: eligible), and
    whether the limit (the fit test) was all that refused it."""

    candidate: Candidate
    verdict: str | None
    only_the_limit: bool
    #: Whether its host's telemetry was fresh (a stale host's room is unknown).
    fresh: bool
    #: An eligible VM's places in the orders the policy picks by (to start a job, to queue
    #: one behind a running job), computed once with its verdict: a kept verdict is compared
    #: by many decisions. None where the policy gives none.
    start_order: tuple[float, float, str] | None = None
    queue_order: tuple[float, float, str] | None = None


Judge = Callable[[VmView], Judged]
#: The order in which a job held past `hold_s` picks among the VMs refused only by the limit
#: (smallest first; it must end in the VM's id, so that it is a total order).
OverflowKey = Callable[[Candidate], tuple[float, float, str]]


def room_ops_per_s(candidate: Candidate) -> float | None:
    """limit - the worse of demand now and Dom0's whole meter, at least 0 (None: no known
    limit). The whole meter, lag and all: room is what may take a job over a host's limit,
    so it errs on the side of none."""
    limit = candidate.limit_ops_per_s
    if limit is None:
        return None
    used = max(candidate.total_io_ops_per_s, candidate.host.measured_io_ops_per_s)
    return max(0.0, limit - used)


class TypeScan:
    """The verdicts on every VM of `vms` over one snapshot, kept current by `refresh()`."""

    def __init__(
        self,
        snapshot: FleetSnapshot,
        vms: Sequence[VmView],
        judge: Judge,
        overflow_key: OverflowKey,
    ) -> None:
        self._snapshot = snapshot
        self._judge = judge
        self._overflow_key = overflow_key
        self._position = {vm.vm_id: i for i, vm in enumerate(vms)}
        self._by_host: dict[str, list[VmView]] = {}
        for vm in vms:
            self._by_host.setdefault(vm.host_id, []).append(vm)
        self._results: dict[str, Judged] = {}
        self._eligible: dict[str, Candidate] = {}
        self._over_limit: dict[str, Candidate] = {}
        #: Lazily built on the first `best_over_limit`; stale entries are skipped when popped.
        self._overflow_heap: list[tuple[tuple[float, float, str], int, Candidate]] | None = None
        self._pushed = 0  # a tie-break for two entries of one VM with the same key
        self.rejections: dict[str, int] = {}
        self._room: dict[str, float] = {}
        self._room_total = 0.0
        self._seen = snapshot.claims_made
        for vm in vms:
            self._add(vm)

    def __len__(self) -> int:
        return len(self._position)

    def refresh(self) -> None:
        """Re-judge the VMs of every host a claim landed on since the last look."""
        changed = self._snapshot.hosts_claimed_since(self._seen)
        self._seen = self._snapshot.claims_made
        for host_id in dict.fromkeys(changed):
            for vm in self._by_host.get(host_id, ()):
                self._remove(vm.vm_id)
                self._add(vm)

    def result(self, vm_id: str) -> Judged | None:
        """The VM's verdict as of the last `refresh()` (None: not of this type)."""
        return self._results.get(vm_id)

    def eligible(self) -> list[Candidate]:
        """The eligible VMs, in the order of `vms` (what a scan in that order would find)."""
        return sorted(self._eligible.values(), key=lambda c: self._position[c.vm.vm_id])

    def has_over_limit(self) -> bool:
        return bool(self._over_limit)

    def best_over_limit(self) -> Candidate | None:
        """The VM refused only by the limit that comes first by `overflow_key`."""
        if not self._over_limit:
            return None
        heap = self._overflow_heap
        if heap is None:
            heap = [(self._overflow_key(c), i, c) for i, c in enumerate(self._over_limit.values())]
            heapq.heapify(heap)
            self._overflow_heap = heap
            self._pushed = len(heap)
        while heap:
            candidate = heap[0][2]
            if self._over_limit.get(candidate.vm.vm_id) is candidate:
                return candidate
            heapq.heappop(heap)  # re-judged since: a newer entry stands for it
        return None

    def room_ops_per_s(self) -> float:
        """Σ over the fresh hosts of the type of `room_ops_per_s`: what they have left together."""
        return max(0.0, self._room_total)

    def refused(self, skip: set[str]) -> Iterator[tuple[Candidate, str]]:
        """Refused VMs and why, in no particular order, leaving out those in `skip`."""
        for vm_id, judged in self._results.items():
            if judged.verdict is not None and vm_id not in skip:
                yield judged.candidate, judged.verdict

    # --- bookkeeping ------------------------------------------------------------------------

    def _add(self, vm: VmView) -> None:
        judged = self._judge(vm)
        self._results[vm.vm_id] = judged
        candidate = judged.candidate
        if judged.fresh:
            room = room_ops_per_s(candidate)
            if room is not None:
                self._room_total += room - self._room.get(vm.host_id, 0.0)
                self._room[vm.host_id] = room
        if judged.verdict is None:
            self._eligible[vm.vm_id] = candidate
            return
        self.rejections[judged.verdict] = self.rejections.get(judged.verdict, 0) + 1
        if judged.only_the_limit:
            self._over_limit[vm.vm_id] = candidate
            if self._overflow_heap is not None:
                self._pushed += 1
                entry = (self._overflow_key(candidate), self._pushed, candidate)
                heapq.heappush(self._overflow_heap, entry)

    def _remove(self, vm_id: str) -> None:
        judged = self._results.pop(vm_id, None)
        if judged is None:
            return
        self._eligible.pop(vm_id, None)
        self._over_limit.pop(vm_id, None)
        if judged.verdict is not None:
            left = self.rejections[judged.verdict] - 1
            if left:
                self.rejections[judged.verdict] = left
            else:
                del self.rejections[judged.verdict]
