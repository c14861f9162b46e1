"""The chaos scenarios, the fleet they run on, and their fault plans. Pure: no processes.

A scenario names its faults declaratively (`Repeat`: one every U(lo, hi) seconds while jobs are
submitted; `Once`: at a seeded fraction of the submission window, with a seeded outage), and
`plan()` turns them into concrete `PlannedFault`s from a seeded `random.Random`: the same seed
gives the same fault times, targets and outages, whatever the machine. What a fault does is
`benchmarks.chaos.faults`; the processes are `benchmarks.chaos.fleet`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ChaosHost:
    host_id: str
    io_capacity_ops_per_s: float
    vm_ids: tuple[str, ...]

    @property
    def io_limit_ops_per_s(self) -> float:
        # 90 % of the channel, as the demo's hosts announce (what `vmlb calibrate` would leave).
        return round(0.9 * self.io_capacity_ops_per_s)


#: Every VM serves this one job type, so any VM can take any job (a job on two VMs is possible).
JOB_TYPE = "mixed"

#: Three emulated hosts of two VMs each: small enough for a 2-core machine with a broker, one or
#: two workers and the harness itself.
FLEET: tuple[ChaosHost, ...] = tuple(
    ChaosHost(f"chaos-{name}", 1200.0, (f"chaos-{name}-1", f"chaos-{name}-2"))
    for name in ("a", "b", "c")
)

#: A job the fleet clears quickly: 10 I/O requests and 2 ms of CPU. io-aware judges a job by the
#: rate it asks while it runs (its I/O over its ~50 ms run here: ~200 ops/s), so both VMs of a
#: host may run at once under its 1080 ops/s limit, and 30 jobs/s waits for nothing without a
#: fault. (40 requests asked ~800 ops/s while running: one job per host at a time, and on a
#: loaded machine the dispatcher's round trip between jobs made some wait.)
LIGHT_PAYLOAD: dict[str, Any] = {"io_ops": 10, "cpu_ms": 2}


def fleet_limit_ops_per_s(fleet: tuple[ChaosHost, ...] = FLEET) -> float:
    return sum(host.io_limit_ops_per_s for host in fleet)


def vm_ids(fleet: tuple[ChaosHost, ...] = FLEET) -> list[str]:
    return [vm_id for host in fleet for vm_id in host.vm_ids]


class FaultKind(StrEnum):
    WORKER_KILL = "worker-kill"  # SIGKILL a worker, restart it at once with the same data dir
    WORKER_KILL_EMPTY = "worker-kill-empty"  # the same, its data dir emptied first
    WORKER_ADD = "worker-add"  # start one more worker (a new data dir)
    WORKER_REMOVE = "worker-remove"  # SIGTERM the newest worker (a clean scale-down)
    GUEST_KILL = "guest-kill"  # SIGKILL one `vmlb guest` (its host restarts it after 2 s)
    GUEST_KILL_AT_PUBLISH = "guest-kill-at-publish"  # ...the moment its end record lands
    DOM0_KILL = "dom0-kill"  # SIGKILL one host's `vmlb dom0` (its host restarts it after 2 s)
    BROKER_STOP = "broker-stop"  # SIGTERM a broker node; start it again after the outage
    BROKER_KILL = "broker-kill"  # SIGKILL a broker node; start it again after the outage

    @property
    def hits_worker(self) -> bool:
        return self in (FaultKind.WORKER_KILL, FaultKind.WORKER_KILL_EMPTY, FaultKind.WORKER_REMOVE)

    @property
    def hits_broker(self) -> bool:
        return self in (FaultKind.BROKER_STOP, FaultKind.BROKER_KILL)


@dataclass(frozen=True)
class PlannedFault:
    kind: FaultKind
    #: Seconds from the first submission.
    offset_s: float
    #: Which worker, VM, host or broker node (an index into the fleet's list of them).
    target: int = 0
    #: Broker faults: how long the node stays down.
    outage_s: float = 0.0
    #: Inject only once jobs wait (up to a few seconds later): a worker killed mid-retry.
    when_waiting: bool = False


@dataclass(frozen=True)
class Repeat:
    """One fault every U(lo, hi) seconds while jobs are submitted."""

    kind: FaultKind
    every_s: tuple[float, float]
    #: A fixed target (e.g. always the second worker); None: a seeded choice each time.
    target: int | None = None
    when_waiting: bool = False


@dataclass(frozen=True)
class Once:
    """One fault at U(lo, hi) of the submission window."""

    kind: FaultKind
    at_fraction: tuple[float, float]
    outage_s: tuple[float, float] = (0.0, 0.0)
    target: int | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    faults: tuple[Repeat | Once, ...] = ()
    #: Workers running when jobs start.
    workers: int = 1
    #: Broker nodes; with 3, every topic the harness creates has replication 3.
    nodes: int = 1
    #: Offered I/O as a multiple of the fleet's limits (jobs then wait); None: light jobs.
    overload: float | None = None

    def payload(self, rate_per_s: float) -> dict[str, Any]:
        """Each job's payload at `rate_per_s`: light, or heavy enough for the overload."""
        if self.overload is None:
            return dict(LIGHT_PAYLOAD)
        io_ops = round(self.overload * fleet_limit_ops_per_s() / rate_per_s)
        return {**LIGHT_PAYLOAD, "io_ops": io_ops}

    @property
    def replication_factor(self) -> int:
        return self.nodes

    @property
    def min_insync_replicas(self) -> int | None:
        """A write waits for 2 of 3 replicas (one broker may die); unset on a single node."""
        return self.nodes - 1 if self.nodes >= 3 else None

    @property
    def faults_broker(self) -> bool:
        return any(f.kind.hits_broker for f in self.faults)

    def plan(self, rng: random.Random, window_s: float) -> list[PlannedFault]:
        """The run's faults, in time order, from `rng` (seeded) and the submission window."""
        planned: list[PlannedFault] = []
        for pattern in self.faults:
            if isinstance(pattern, Repeat):
                # The first within U(lo, hi), but never past 80 % of a short window: every run
                # gets at least one fault.
                lo, hi = pattern.every_s
                at = rng.uniform(min(lo, 0.4 * window_s), min(hi, 0.8 * window_s))
                # The last fault leaves a little of the window, so it hits flowing jobs.
                while at < window_s - 1.0:
                    planned.append(
                        PlannedFault(
                            pattern.kind,
                            round(at, 3),
                            self._target(rng, pattern.kind, pattern.target),
                            when_waiting=pattern.when_waiting,
                        )
                    )
                    at += rng.uniform(*pattern.every_s)
            else:
                planned.append(
                    PlannedFault(
                        pattern.kind,
                        round(rng.uniform(*pattern.at_fraction) * window_s, 3),
                        self._target(rng, pattern.kind, pattern.target),
                        outage_s=round(rng.uniform(*pattern.outage_s), 3),
                    )
                )
        return sorted(planned, key=lambda fault: fault.offset_s)

    def _target(self, rng: random.Random, kind: FaultKind, fixed: int | None) -> int:
        if fixed is not None:
            return fixed
        if kind in (FaultKind.GUEST_KILL, FaultKind.GUEST_KILL_AT_PUBLISH):
            return rng.randrange(len(vm_ids()))
        if kind is FaultKind.DOM0_KILL:
            return rng.randrange(len(FLEET))
        if kind.hits_broker:
            return rng.randrange(self.nodes)
        return 0


_WORKER_EVERY_S = (8.0, 15.0)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("none", "no fault: the baseline"),
        Scenario(
            "worker-kill",
            "the worker SIGKILLed every 8-15 s, restarted at once with the same data dir",
            (Repeat(FaultKind.WORKER_KILL, _WORKER_EVERY_S),),
        ),
        Scenario(
            "worker-kill-empty",
            "the worker SIGKILLed every 8-15 s, restarted at once with its data dir emptied",
            (Repeat(FaultKind.WORKER_KILL_EMPTY, _WORKER_EVERY_S),),
        ),
        Scenario(
            "two-workers-kill",
            "two workers; the second SIGKILLed every 8-15 s and restarted (same data dir)",
            (Repeat(FaultKind.WORKER_KILL, _WORKER_EVERY_S, target=1),),
            workers=2,
        ),
        Scenario(
            "scale",
            "1 -> 2 -> 1 workers: a second worker joins, later stops cleanly (SIGTERM)",
            (
                Once(FaultKind.WORKER_ADD, (0.15, 0.3)),
                Once(FaultKind.WORKER_REMOVE, (0.6, 0.75), target=1),
            ),
        ),
        Scenario(
            "guest-kill",
            "a seeded guest SIGKILLed every 3-7 s (its host restarts it)",
            (Repeat(FaultKind.GUEST_KILL, (3.0, 7.0)),),
        ),
        Scenario(
            "guest-kill-at-publish",
            "every 5-10 s, the next guest to publish a job's end is SIGKILLed as it lands",
            (Repeat(FaultKind.GUEST_KILL_AT_PUBLISH, (5.0, 10.0)),),
        ),
        Scenario(
            "dom0-kill",
            "a seeded host's Dom0 SIGKILLed every 8-15 s (its host restarts it)",
            (Repeat(FaultKind.DOM0_KILL, _WORKER_EVERY_S),),
        ),
        Scenario(
            "worker-kill-retrying",
            "jobs asking 1.6x the fleet's I/O limits, so they wait: the worker SIGKILLed every "
            "8-15 s while it retries them, restarted with the same data dir",
            (Repeat(FaultKind.WORKER_KILL, _WORKER_EVERY_S, when_waiting=True),),
            overload=1.6,
        ),
        Scenario(
            "broker-stop",
            "the broker stopped (SIGTERM) for 5-10 s, then started again",
            (Once(FaultKind.BROKER_STOP, (0.25, 0.45), outage_s=(5.0, 10.0)),),
        ),
        Scenario(
            "broker-kill",
            "the broker SIGKILLed, started again after 5-10 s",
            (Once(FaultKind.BROKER_KILL, (0.25, 0.45), outage_s=(5.0, 10.0)),),
        ),
        Scenario(
            "broker-outage-long",
            "the broker stopped for 45 s: longer than the Dom0s', guests' and dispatcher's "
            "delivery timeouts (15 s)",
            (Once(FaultKind.BROKER_STOP, (0.1, 0.2), outage_s=(45.0, 45.0)),),
        ),
        Scenario(
            "replicated-broker-kill",
            "3 broker nodes, every topic at replication 3; one node SIGKILLed, back after 10-20 s",
            (Once(FaultKind.BROKER_KILL, (0.25, 0.45), outage_s=(10.0, 20.0)),),
            nodes=3,
        ),
    )
}


def select(names: list[str] | None) -> list[Scenario]:
    """The named scenarios (every one if none named); unknown names all in one error."""
    if not names:
        return list(SCENARIOS.values())
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ConfigError(
            f"--scenario: unknown {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return [SCENARIOS[name] for name in names]
