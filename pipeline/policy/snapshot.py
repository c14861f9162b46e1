"""What a dispatch policy may know of the fleet: plain host and VM records, frozen at one time.

This module owns the snapshot a policy decides over: `VmView` and `HostView` (plain records,
built by `pipeline.fleet` from the FleetView, or by the simulator from delivered telemetry),
`PolicyConfig` (the policy's tunables), and `FleetSnapshot`, which indexes them once and records
this dispatcher's own placements as claims (OpenStack Nova "consumes" a placement into its host
state at once, so the next decision of a burst sees it).

It must not read a clock, touch Kafka, or know any policy: the formulas live in `load` and the
decisions in the policy modules.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from pipeline.errors import ConfigError


@dataclass(frozen=True, slots=True)
class VmView:
    """One VM as the dispatcher last heard of it."""

    vm_id: str
    host_id: str
    job_type: str
    #: Paper Eq. 1: jobs completed per second over the load window.
    load_jobs_per_s: float = 0.0
    #: Paper Table 2: I/O requests one job costs; None until measured (or configured).
    io_per_job: float | None = None
    #: The VM's I/O rate measured from the host (Dom0), over the load window.
    io_ops_per_s: float = 0.0
    #: Jobs dispatched to the VM and not completed, as last reported by the pipeline.
    outstanding_jobs: int = 0
    #: What the guest sees of itself: the fraction of time it was busy.
    busy_fraction: float = 0.0


@dataclass(frozen=True, slots=True)
class HostView:
    """One physical host: its I/O limit, how fresh its telemetry is, and its VMs."""

    host_id: str
    #: Paper Table 1: the host's acceptable I/O rate; None while not known.
    limit_ops_per_s: float | None
    #: Epoch seconds of the newest I/O sample from this host; None if never heard from.
    last_telemetry_at: float | None
    vms: tuple[VmView, ...]
    #: False while an operator has cordoned or is draining the host: its VMs are no candidates.
    accepts_jobs: bool = True

    @property
    def paper_total_io_ops_per_s(self) -> float:
        """Paper Table 3: Σ load[vm] * io_per_job[vm]; a VM with unknown io_per_job counts 0."""
        return sum(vm.load_jobs_per_s * (vm.io_per_job or 0.0) for vm in self.vms)

    @property
    def measured_io_ops_per_s(self) -> float:
        """The host's I/O rate as Dom0 measured it: Σ of its VMs' io_ops_per_s."""
        return sum(vm.io_ops_per_s for vm in self.vms)


@dataclass(frozen=True)
class PolicyConfig:
    """The policies' tunables, with documented defaults (settings `VMLB_STALE_AFTER_S`, ...)."""

    #: A host whose newest telemetry is this far behind the fleet's newest (the telemetry
    #: watermark) is ineligible: silence is never idleness.
    stale_after_s: float = 3.0
    #: When even the fleet's newest telemetry is older than this (wall clock), every host is
    #: stale: the telemetry path itself is down, or the pipeline is this far behind.
    lag_limit_s: float = 15.0
    #: The I/O of jobs dispatched but not finished is spread over this many seconds ahead.
    horizon_s: float = 5.0
    #: Before a host's limit is known, a VM is eligible only while it holds fewer jobs than this.
    warmup_outstanding_per_vm: int = 2
    #: Power of d choices: how many eligible candidates are compared.
    choices: int = 2
    #: Random candidates tested before falling back to a scan of all of them.
    probe_limit: int = 16
    #: At most this many examined candidates are recorded in a decision (a scan examines all).
    max_recorded_candidates: int = 32

    def __post_init__(self) -> None:
        positive = ("stale_after_s", "lag_limit_s", "horizon_s")
        at_least_one = (
            "warmup_outstanding_per_vm",
            "choices",
            "probe_limit",
            "max_recorded_candidates",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"policy config {name}: must be a number > 0, got {value!r}")
        for name in at_least_one:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"policy config {name}: must be an integer >= 1, got {value!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


DEFAULT_POLICY_CONFIG = PolicyConfig()


class FleetSnapshot:
    """The fleet at `taken_at`, indexed once; mutable only through `claim()`.

    A decision "consumes" its placement at once (Nova-style), so the next decision sees it:
    `claims(vm_id)` counts placements this dispatcher made that the VM's reported
    `outstanding_jobs` does not include yet.
    """

    __slots__ = (
        "_by_type",
        "_claims",
        "_hosts",
        "_median_io_per_job",
        "_vms",
        "config",
        "taken_at",
        "telemetry_watermark",
    )

    def __init__(
        self,
        hosts: Iterable[HostView],
        taken_at: float,
        config: PolicyConfig = DEFAULT_POLICY_CONFIG,
    ) -> None:
        self.taken_at = taken_at
        self.config = config
        self._hosts: dict[str, HostView] = {}
        self._vms: dict[str, VmView] = {}
        by_type: dict[str, list[VmView]] = {}
        known_io_per_job: dict[str, list[float]] = {}
        for host in hosts:
            if host.host_id in self._hosts:
                raise ValueError(f"host {host.host_id!r} appears twice in the snapshot")
            self._hosts[host.host_id] = host
            for vm in host.vms:
                if vm.host_id != host.host_id:
                    raise ValueError(
                        f"VM {vm.vm_id!r} says host {vm.host_id!r} but is listed under {host.host_id!r}"
                    )
                if vm.vm_id in self._vms:
                    raise ValueError(f"VM {vm.vm_id!r} appears twice in the snapshot")
                self._vms[vm.vm_id] = vm
                if host.accepts_jobs:
                    by_type.setdefault(vm.job_type, []).append(vm)
                if vm.io_per_job is not None:
                    known_io_per_job.setdefault(vm.job_type, []).append(vm.io_per_job)
        # Host-id order (then VM id) is the paper's dispatch order and keeps every policy
        # deterministic whatever order the hosts came in.
        self._by_type: dict[str, tuple[VmView, ...]] = {
            job_type: tuple(sorted(vms, key=lambda vm: (vm.host_id, vm.vm_id)))
            for job_type, vms in by_type.items()
        }
        self._median_io_per_job: dict[str, float] = {
            job_type: statistics.median(values) for job_type, values in known_io_per_job.items()
        }
        self._claims: dict[str, int] = {}
        #: The newest telemetry of any host: how far the pipeline has got in event time.
        self.telemetry_watermark: float | None = max(
            (h.last_telemetry_at for h in self._hosts.values() if h.last_telemetry_at is not None),
            default=None,
        )

    # --- lookups ----------------------------------------------------------------------------

    def host(self, host_id: str) -> HostView:
        return self._hosts[host_id]

    def hosts(self) -> Iterable[HostView]:
        return self._hosts.values()

    def vm(self, vm_id: str) -> VmView:
        return self._vms[vm_id]

    def candidates(self, job_type: str) -> Sequence[VmView]:
        """The VMs serving `job_type`, in (host_id, vm_id) order; empty if none."""
        return self._by_type.get(job_type, ())

    def serves(self, job_type: str) -> bool:
        return job_type in self._by_type

    def job_types(self) -> Iterable[str]:
        return self._by_type.keys()

    def __len__(self) -> int:
        return len(self._hosts)

    # --- claims -----------------------------------------------------------------------------

    def claims(self, vm_id: str) -> int:
        """Placements on this VM made locally and not yet in its reported outstanding count."""
        return self._claims.get(vm_id, 0)

    def claim(self, vm_id: str, count: int = 1) -> None:
        """Record `count` placements on `vm_id`, so that every later decision counts them (a
        negative count releases: the dispatcher learnt that jobs of it finished)."""
        if vm_id not in self._vms:
            raise KeyError(f"claim on VM {vm_id!r}, which is not in the snapshot")
        self._claims[vm_id] = self._claims.get(vm_id, 0) + count

    def outstanding(self, vm: VmView) -> int:
        """Jobs on the VM not finished: as reported, plus local claims (a release, a negative
        claim, never takes it below zero)."""
        return max(0, vm.outstanding_jobs + self._claims.get(vm.vm_id, 0))

    # --- estimates --------------------------------------------------------------------------

    def io_per_job_estimate(self, vm: VmView) -> float | None:
        """The VM's io_per_job, else the median of measured VMs of its type, else None."""
        if vm.io_per_job is not None:
            return vm.io_per_job
        return self._median_io_per_job.get(vm.job_type)

    def telemetry_age_s(self, host: HostView) -> float | None:
        """Wall-clock age of the host's newest telemetry at `taken_at` (None: never reported)."""
        if host.last_telemetry_at is None:
            return None
        return self.taken_at - host.last_telemetry_at

    def telemetry_behind_s(self, host: HostView) -> float | None:
        """How far the host's newest telemetry is behind the fleet's newest (event time).

        A host whose Dom0 went quiet falls behind while the others advance; a pipeline that lags
        delays every host alike and moves none behind. None: never reported.
        """
        if host.last_telemetry_at is None or self.telemetry_watermark is None:
            return None
        return self.telemetry_watermark - host.last_telemetry_at
