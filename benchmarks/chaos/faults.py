"""Injecting one planned fault into a running chaos fleet, and recording when it happened.

Each injection returns an `accounting.Fault`: when the fault was injected (`at`), when the
harness had undone it (`until`: the kill itself for a process that is restarted at once, the
moment a stopped broker serves clients again), which target, and for a worker fault the jobs
partitions that worker owned (from its `/status`, read just before: the fault's scope, not a
count). Restarts: a killed worker is started again at once by the harness (its supervisor);
a killed guest or Dom0 by its own `vmlb host`, after that host's pause (2 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from benchmarks.chaos.accounting import Fault
from benchmarks.chaos.fleet import Brokers, ChaosFleet, kill
from benchmarks.chaos.follow import StatusFollower
from benchmarks.chaos.scenarios import FLEET, FaultKind, PlannedFault, Scenario, vm_ids

#: How long a conditional fault waits for its condition (jobs waiting, a guest publishing).
CONDITION_TIMEOUT_S = 15.0

#: How long a broker node restarted by a fault may take to serve clients again.
BROKER_RESTART_TIMEOUT_S = 300.0


class Injector:
    def __init__(
        self,
        scenario: Scenario,
        fleet: ChaosFleet,
        brokers: Brokers,
        follower: StatusFollower,
        log: Callable[[str], None],
    ) -> None:
        self.scenario = scenario
        self.fleet = fleet
        self.brokers = brokers
        self.follower = follower
        self.log = log

    def inject(self, planned: PlannedFault) -> Fault:
        kind = planned.kind
        if kind in (FaultKind.WORKER_KILL, FaultKind.WORKER_KILL_EMPTY):
            return self._kill_worker(planned)
        if kind is FaultKind.WORKER_ADD:
            at = time.time()
            self.fleet.start_worker()
            return Fault(kind.value, at, at, f"worker {len(self.fleet.workers) - 1}")
        if kind is FaultKind.WORKER_REMOVE:
            partitions = self._partitions(planned.target)
            at = time.time()
            self.fleet.stop_worker(planned.target)
            return Fault(kind.value, at, time.time(), f"worker {planned.target}", partitions)
        if kind is FaultKind.GUEST_KILL:
            vm_id = vm_ids()[planned.target]
            pid = self.fleet.guest_pid(vm_id)
            at = time.time()
            note = None if pid is not None and kill(pid) else "not running (being restarted)"
            return Fault(kind.value, at, at, f"guest {vm_id}", note=note)
        if kind is FaultKind.GUEST_KILL_AT_PUBLISH:
            return self._kill_guest_at_publish()
        if kind is FaultKind.DOM0_KILL:
            host_id = FLEET[planned.target].host_id
            pid = self.fleet.dom0_pid(host_id)
            at = time.time()
            note = None if pid is not None and kill(pid) else "not running (being restarted)"
            return Fault(kind.value, at, at, f"dom0 {host_id}", note=note)
        return self._broker(planned)

    def _partitions(self, index: int) -> frozenset[int] | None:
        try:
            return frozenset(self.fleet.workers[index].get("/status")["job_partitions"])
        except (OSError, ValueError, KeyError):
            return None  # not answering (still starting): the fault's scope is every partition

    def _kill_worker(self, planned: PlannedFault) -> Fault:
        note = None
        if planned.when_waiting:
            deadline = time.monotonic() + CONDITION_TIMEOUT_S
            while self.follower.waiting() == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            note = f"{self.follower.waiting()} jobs waiting at the kill"
        partitions = self._partitions(planned.target)
        at = time.time()
        self.fleet.kill_worker(planned.target, empty=planned.kind is FaultKind.WORKER_KILL_EMPTY)
        return Fault(planned.kind.value, at, at, f"worker {planned.target}", partitions, note)

    def _kill_guest_at_publish(self) -> Fault:
        fired = threading.Event()
        struck: dict[str, object] = {}

        def strike(vm_id: str, job_id: str) -> None:
            pid = self.fleet.guest_pid(vm_id)
            struck.update(at=time.time(), vm_id=vm_id, job_id=job_id)
            struck["killed"] = pid is not None and kill(pid)
            fired.set()

        self.follower.arm(strike)
        if not fired.wait(CONDITION_TIMEOUT_S):
            self.follower.disarm()
            at = time.time()
            return Fault(FaultKind.GUEST_KILL_AT_PUBLISH.value, at, at, "none", note="no publish")
        at = float(struck["at"])  # type: ignore[arg-type]
        note = f"as job {struck['job_id']}'s end landed" + (
            "" if struck["killed"] else " (guest not running)"
        )
        return Fault(FaultKind.GUEST_KILL_AT_PUBLISH.value, at, at, f"guest {struck['vm_id']}",
                     note=note)  # fmt: skip

    def _broker(self, planned: PlannedFault) -> Fault:
        cluster = self.brokers.cluster(self.scenario.nodes)
        node_id = planned.target + 1
        at = time.time()
        cluster.stop_node(node_id, kill=planned.kind is FaultKind.BROKER_KILL)
        self.log(f"broker node {node_id} down for {planned.outage_s:.0f} s")
        time.sleep(max(0.0, at + planned.outage_s - time.time()))
        # A node restarted after a kill recovers its logs first: on a loaded machine that has
        # taken over the 90 s a fresh start is given (seen at load average 22).
        cluster.start(ready_timeout_s=BROKER_RESTART_TIMEOUT_S)
        until = time.time()
        return Fault(planned.kind.value, at, until, f"broker node {node_id}",
                     note=f"down {until - at:.1f} s")  # fmt: skip
