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

import itertools
import math
import operator
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, KeysView, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple, TypeVar

from pipeline.errors import ConfigError
from pipeline.policy.type_sums import NO_SUMS, TypeSums, noise_term

T = TypeVar("T")


class VmView(NamedTuple):
    """One VM as the dispatcher last heard of it.

    A named tuple, not a dataclass: the fleet view builds one for every state a VM reports
    (10,000 a second in a 10,000-VM fleet), and a tuple is built in a third of the time of a
    frozen dataclass. Immutable all the same; `_replace` gives a changed copy."""

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

    @property
    def service_s(self) -> float | None:
        """Mean seconds one job took over the load window: busy_fraction / load (None: no
        completions in the window). A VM runs one job at a time, so this is its service time."""
        if self.load_jobs_per_s <= 0 or self.busy_fraction <= 0:
            return None
        return self.busy_fraction / self.load_jobs_per_s


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
    #: A VM may hold (queued behind its running job) at most the jobs it clears in this many
    #: seconds at its measured service rate; more wait at the dispatcher (HAProxy's maxqueue).
    horizon_s: float = 1.0
    #: Before a host's limit (or a VM's job I/O rate) is known, a VM is eligible only while it
    #: holds fewer jobs than this.
    warmup_outstanding_per_vm: int = 2
    #: Power of d choices: how many eligible candidates are compared.
    choices: int = 2
    #: Random candidates tested before falling back to a scan of all of them.
    probe_limit: int = 16
    #: At most this many examined candidates are recorded in a decision (a scan examines all).
    max_recorded_candidates: int = 32
    #: The strictness (setting `VMLB_HOLD_S`): how long io-aware holds a job that fits under no
    #: host's limit before it sends it over one, to the host it overshoots least. `inf` never
    #: overloads a host (a job waits as long as it takes); 0 never holds (I/O-aware placement
    #: while some host has room, I/O-blind beyond). Longer holds trade p99 for time over limit.
    hold_s: float = 0.25
    #: Hysteresis: a host that went over its limit (measured, or by a job sent over it) takes no
    #: new job until it is back under (1 - hysteresis) x its limit, so it does not flap.
    hysteresis: float = 0.1
    #: The window Dom0's meter (a VM's `io_ops_per_s`) averages over, ending at the host's
    #: newest sample: the rate window (setting `VMLB_RATE_WINDOW_S`). A job of this dispatcher
    #: that ended within it explains the meter's I/O (`pipeline.policy.load`).
    meter_window_s: float = 5.0

    def __post_init__(self) -> None:
        positive = ("stale_after_s", "lag_limit_s", "horizon_s", "meter_window_s")
        at_least_one = (
            "warmup_outstanding_per_vm",
            "choices",
            "probe_limit",
            "max_recorded_candidates",
        )
        for name in positive:
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ConfigError(f"policy config {name}: must be a number > 0, got {value!r}")
        for name in at_least_one:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"policy config {name}: must be an integer >= 1, got {value!r}")
        if not _is_number(self.hold_s) or math.isnan(self.hold_s) or self.hold_s < 0:
            raise ConfigError(
                f"policy config hold_s: must be a number >= 0 (inf: never over a limit), "
                f"got {self.hold_s!r}"
            )
        if not _is_number(self.hysteresis) or not 0 <= self.hysteresis < 1:
            raise ConfigError(
                f"policy config hysteresis: must be a number in [0, 1), got {self.hysteresis!r}"
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


DEFAULT_POLICY_CONFIG = PolicyConfig()


@dataclass(frozen=True, slots=True)
class HostPart:
    """What one host adds to a fleet's index: its VMs by job type (if it takes jobs), their
    measured io_per_job, the sums its VMs add to their type's pooled service time, and, per
    type, its own pooled service time and how far its VMs of the type scatter around it."""

    view: HostView
    by_type: dict[str, tuple[VmView, ...]]
    io_per_job: dict[str, list[float]]
    #: Each metered VM's I/O per busy second (Dom0's meter over the guest's busy fraction).
    io_per_busy_s: dict[str, list[float]]
    busy: dict[str, float]
    load: dict[str, float]
    #: vm_id -> its view, in the order of `view.vms`.
    vms: dict[str, VmView]
    #: Per job type, Σ busy / Σ load over this host's VMs of it that ran lately: the mean
    #: service time of their jobs on this host.
    service_s: dict[str, float]
    #: Per job type its VMs here ran lately, this host's terms of the fleet's sums
    #: (`TypeSums`): its busy and load, its own time, its VMs' scatter around it (Σ load x
    #: (VM's service / host's - 1)² over two or more VMs), its limit (see
    #: `FleetIndex.host_service_s`).
    sums: dict[str, TypeSums]

    @classmethod
    def of(cls, host: HostView) -> HostPart:
        host_id = host.host_id
        takes_jobs = host.accepts_jobs
        by_type: defaultdict[str, list[VmView]] = defaultdict(list)
        io_per_job: defaultdict[str, list[float]] = defaultdict(list)
        io_per_busy_s: defaultdict[str, list[float]] = defaultdict(list)
        busy: defaultdict[str, float] = defaultdict(float)
        load: defaultdict[str, float] = defaultdict(float)
        for vm in host.vms:
            if vm.host_id != host_id:
                raise ValueError(
                    f"VM {vm.vm_id!r} says host {vm.host_id!r} but is listed under {host_id!r}"
                )
            job_type = vm.job_type
            if takes_jobs:
                by_type[job_type].append(vm)
            if vm.io_per_job is not None:
                io_per_job[job_type].append(vm.io_per_job)
            busy_fraction = vm.busy_fraction
            if busy_fraction > 0:
                if vm.load_jobs_per_s > 0:
                    busy[job_type] += busy_fraction
                    load[job_type] += vm.load_jobs_per_s
                if vm.io_ops_per_s > 0:
                    io_per_busy_s[job_type].append(vm.io_ops_per_s / busy_fraction)
        # Host-id order, then VM id: the paper's dispatch order (`FleetIndex.by_type`).
        typed = {job_type: tuple(sorted(vms, key=_VM_ID)) for job_type, vms in by_type.items()}
        vms = dict(zip(map(_VM_ID, host.vms), host.vms, strict=True))
        service_s = {job_type: busy[job_type] / load[job_type] for job_type in busy}
        spread: dict[str, list[float]] = {}
        for vm in host.vms:
            if vm.load_jobs_per_s > 0 and vm.busy_fraction > 0:
                own = vm.busy_fraction / vm.load_jobs_per_s
                deviation = own / service_s[vm.job_type] - 1.0
                spread.setdefault(vm.job_type, []).append(vm.load_jobs_per_s * deviation**2)
        sums = {}
        for job_type in service_s:
            terms = spread[job_type]
            within, dof = (sum(terms), len(terms) - 1) if len(terms) > 1 else (0.0, 0)
            sums[job_type] = TypeSums.of_host(
                busy[job_type], load[job_type], within, dof, host.limit_ops_per_s
            )
        return cls(
            host,
            typed,
            dict(io_per_job),
            dict(io_per_busy_s),
            dict(busy),
            dict(load),
            vms,
            service_s,
            sums,
        )


_VM_ID = operator.attrgetter("vm_id")


class FleetIndex:
    """The fleet's hosts and VMs indexed for a policy: what every snapshot of the same fleet
    state shares (a snapshot adds only its claims). Built from host views (`of`), or from the
    previous index and the hosts that changed (`updated`), which costs O(VMs of the changed
    hosts), not O(VMs): a 10,000-VM fleet's telemetry moves a few hundred VMs between two
    snapshots. What is per host is kept per host (`HostPart`); what spans hosts is derived
    again only where a changed host takes part: its types' candidates (each host's block
    replaced in a list of blocks in host-id order, then joined in C), its types' sums over
    hosts (`TypeSums`: the previous ones, less its old terms, plus its new ones); the VM
    lookup (VM -> host) is shared from index to index until a VM joins, leaves or moves. A
    host joining or leaving derives everything again."""

    __slots__ = (
        "_blocks",
        "_host_spread",
        "_limit_fits",
        "_medians",
        "_medians_per_busy_s",
        "_noise",
        "_position",
        "by_type",
        "host_of",
        "hosts",
        "parts",
        "service_s",
        "sums",
        "telemetry_watermark",
    )

    def __init__(
        self,
        parts: dict[str, HostPart],
        host_of: dict[str, str],
        blocks: dict[str, list[tuple[VmView, ...]]],
        by_type: dict[str, tuple[VmView, ...]],
        sums: dict[str, TypeSums],
        hosts: dict[str, HostView],
        telemetry_watermark: float | None,
        position: dict[str, int] | None = None,
        noise: dict[tuple[str, float], int] | None = None,
    ) -> None:
        #: host_id -> its part, in host-id order; `hosts` the same hosts' views.
        self.parts = parts
        self.hosts = hosts
        #: vm_id -> the id of the host that lists it (`vm()`).
        self.host_of = host_of
        # host_id -> its place in host-id order, and job type -> each host's candidates of the
        # type in that order (`HostPart.by_type`, () where it has none): what `by_type` joins.
        self._position = position if position is not None else {h: i for i, h in enumerate(parts)}
        self._blocks = blocks
        #: job type -> its candidates in host-id order, then VM id: the paper's dispatch
        #: order, which keeps every policy deterministic whatever order the hosts came in.
        self.by_type = by_type
        #: job type -> its sums over the hosts whose VMs of it ran lately (`TypeSums`).
        self.sums = sums
        #: job type -> its pooled service time, for the types that ran.
        self.service_s = {t: s.pooled_service_s for t, s in sums.items() if s.load > 0}
        # (job type, window) -> Σ over its hosts of `noise_term`: kept up to date by `updated`
        # for every window asked for before (in practice the meter's one).
        self._noise = noise if noise is not None else {}
        #: The newest telemetry of any host (None: none has reported).
        self.telemetry_watermark = telemetry_watermark
        self._medians: dict[str, float | None] = {}
        self._medians_per_busy_s: dict[str, float | None] = {}
        self._host_spread: dict[tuple[str, float], tuple[float, float]] = {}
        self._limit_fits: dict[str, tuple[float, float]] = {}

    @classmethod
    def of(cls, hosts: Iterable[HostView]) -> FleetIndex:
        parts: dict[str, HostPart] = {}
        host_of: dict[str, str] = {}
        for host in hosts:
            if host.host_id in parts:
                raise ValueError(f"host {host.host_id!r} appears twice in the snapshot")
            parts[host.host_id] = HostPart.of(host)
            for vm in host.vms:
                if vm.vm_id in host_of:
                    raise ValueError(f"VM {vm.vm_id!r} appears twice in the snapshot")
                host_of[vm.vm_id] = host.host_id
        return cls._of_parts(dict(sorted(parts.items())), host_of)

    @classmethod
    def _of_parts(cls, parts: dict[str, HostPart], host_of: dict[str, str]) -> FleetIndex:
        """The index of these parts (in host-id order), every value across hosts derived."""
        types = dict.fromkeys(t for part in parts.values() for t in part.by_type)
        blocks = {t: [part.by_type.get(t, ()) for part in parts.values()] for t in types}
        sums: dict[str, TypeSums] = {}
        for part in parts.values():
            for t, terms in part.sums.items():
                known = sums.get(t)
                sums[t] = terms if known is None else known.plus(terms)
        hosts = {h: part.view for h, part in parts.items()}
        return cls(
            parts,
            host_of,
            blocks,
            {t: tuple(itertools.chain.from_iterable(b)) for t, b in blocks.items()},
            sums,
            hosts,
            _newest_telemetry(hosts.values()),
        )

    def vm(self, vm_id: str) -> VmView | None:
        """The VM's view (None: no host lists it)."""
        host_id = self.host_of.get(vm_id)
        return None if host_id is None else self.parts[host_id].vms[vm_id]

    def updated(self, changed: dict[str, HostView | None]) -> FleetIndex:
        """This index with the `changed` hosts replaced (None: gone). The caller guarantees a
        VM is listed under one host only (the FleetView does: a VM has one registration), and
        that a VM that moved is on both its hosts' changes.

        Only what the changed hosts take part in is derived again: the candidates of the
        types their VMs serve (before or after), the sums of the types they ran (before or
        after: their old terms out, their new ones in), and the VM lookup if their VMs are not
        the ones they were."""
        new_parts = {h: HostPart.of(view) for h, view in changed.items() if view is not None}
        host_of = self.host_of
        moved = [
            host_id
            for host_id in changed
            if _vm_ids(self.parts.get(host_id)) != _vm_ids(new_parts.get(host_id))
        ]
        if moved:  # a VM joined, left or moved: the lookup is copied, then changed
            host_of = dict(host_of)
            for host_id in moved:
                for vm_id in _vm_ids(self.parts.get(host_id)):
                    del host_of[vm_id]
            for host_id in moved:
                host_of.update(dict.fromkeys(_vm_ids(new_parts.get(host_id)), host_id))

        parts = dict(self.parts)
        gone = [host_id for host_id in changed if host_id not in new_parts]
        for host_id in gone:
            parts.pop(host_id, None)
        if len(parts) != len(self.parts) or any(h not in parts for h in new_parts):
            # A host joined or left: the places in host-id order move, all is derived again.
            parts.update(new_parts)
            return FleetIndex._of_parts(dict(sorted(parts.items())), host_of)
        parts.update(new_parts)

        touched = [*(self.parts[h] for h in new_parts), *new_parts.values()]
        blocks = dict(self._blocks)
        by_type = dict(self.by_type)
        for t in {t for part in touched for t in part.by_type}:
            column = self._blocks.get(t)
            column = column.copy() if column is not None else [()] * len(parts)
            for host_id, part in new_parts.items():
                column[self._position[host_id]] = part.by_type.get(t, ())
            candidates = tuple(itertools.chain.from_iterable(column))
            if candidates:
                blocks[t], by_type[t] = column, candidates
            else:
                del blocks[t], by_type[t]
        sums = dict(self.sums)
        noise = dict(self._noise)
        old_parts = [self.parts[h] for h in new_parts]
        for t in {t for part in touched for t in part.sums}:
            was = [part for part in old_parts if t in part.sums]
            now = [part for part in new_parts.values() if t in part.sums]
            total = sums.get(t, NO_SUMS)
            for part in was:
                total = total.minus(part.sums[t])
            for part in now:
                total = total.plus(part.sums[t])
            windows = [key for key in noise if key[0] == t]
            if total.hosts == 0:
                sums.pop(t, None)
                for key in windows:
                    del noise[key]
                continue
            sums[t] = total
            for key in windows:
                window_s = key[1]
                noise[key] += sum(noise_term(p.load[t], window_s) for p in now) - sum(
                    noise_term(p.load[t], window_s) for p in was
                )
        hosts = self.hosts.copy()
        hosts.update((h, part.view) for h, part in new_parts.items())
        watermark = self.telemetry_watermark
        newest = _newest_telemetry(part.view for part in new_parts.values())
        if (
            watermark is not None
            and any(part.view.last_telemetry_at == watermark for part in old_parts)
            and (newest is None or newest < watermark)
        ):
            watermark = _newest_telemetry(hosts.values())  # the newest one went back or away
        elif newest is not None and (watermark is None or newest > watermark):
            watermark = newest
        return FleetIndex(
            parts, host_of, blocks, by_type, sums, hosts, watermark, self._position, noise
        )

    def host_service_s(self, host_id: str, job_type: str, window_s: float) -> float | None:
        """Mean service time of the type's jobs on one host: its own pooled over its VMs of the
        type, shrunk toward the type's pooled over the fleet as far as its own is noise (an
        empirical-Bayes estimate); the type's if the host's VMs of it ran nothing lately (None:
        no VM of the type did). `window_s` is the window load and busy are measured over (the
        meter's), which turns a rate of jobs into their count.

        Hosts differ: a job paced by its VM's device runs 4x faster on a host whose devices are
        4x faster, and a fleet-pooled time is wrong for both. But one host's mean rests on few
        jobs (tens in a window, sizes vary), and a fit judged within a few percent of a limit
        turns that noise into overloads one way and refusals the other. So the host's own mean
        counts in proportion to how much hosts really differ: with `spread` the variance of
        hosts' relative service times beyond what noise explains and `noise` = cv² / n the
        variance of this host's mean of n jobs, the estimate is pooled + w (own - pooled), w =
        spread / (spread + noise). On a fleet whose hosts run a type alike, spread is ~0 and
        every host gets the pooled time (as before); where they differ far more than noise, each
        gets its own. cv² (the jobs' squared coefficient of variation) is read from the scatter
        of a host's VMs of one type around their host's mean (they run alike, so it is noise),
        pooled over the fleet; without such pairs, 1 (exponential sizes).

        Slower than the fleet, a host's figure may also be its own saturation: a degraded or
        collapsing channel stretches every job on it, which would read as its jobs asking
        *less* and place more beside them (positive feedback). So a host counts as slower than
        the type's pooled time only as far as its limit says it is (log service fitted on log
        limit over the fleet, `_limit_fit`: hosts with slower devices have lower limits); a
        host as fast as its peers by its limit keeps the pooled time however slow it runs.
        Faster than the fleet is never saturation, and counts as the estimate says.
        """
        pooled = self.service_s.get(job_type)
        part = self.parts.get(host_id)
        own = None if part is None else part.service_s.get(job_type)
        if pooled is None or own is None:
            return pooled
        spread, cv2 = self._spread_of(job_type, window_s)
        noise = cv2 / max(1.0, part.load[job_type] * window_s)
        weight = spread / (spread + noise) if spread + noise > 0 else 1.0
        estimate = pooled + weight * (own - pooled)
        if estimate <= pooled:
            return estimate
        # Slower than the fleet: as far as the host's limit says it is slower, no further.
        limit = part.view.limit_ops_per_s
        slope, center = self._limit_fit(job_type)
        if limit is None or limit <= 0 or slope == 0.0:
            return pooled
        return min(estimate, max(pooled, pooled * math.exp(slope * (math.log(limit) - center))))

    def _limit_fit(self, job_type: str) -> tuple[float, float]:
        """(slope, centre) of log(host's service time of the type) against log(host's limit),
        least squares weighted by the host's jobs per second of the type, over the hosts that
        ran it lately and have a limit; centre is the weighted mean log limit. From the
        type's sums (`TypeSums.limit_fit`), once per index."""
        known = self._limit_fits.get(job_type)
        if known is None:
            known = self._limit_fits[job_type] = self.sums[job_type].limit_fit()
        return known

    def _spread_of(self, job_type: str, window_s: float) -> tuple[float, float]:
        """(spread, cv²) of the type's service times across hosts (`host_service_s`), from the
        type's sums, once per index and window. The noise sum depends on the window: the
        first time a window is asked for it is O(hosts), then kept up to date by `updated`."""
        key = (job_type, window_s)
        known = self._host_spread.get(key)
        if known is not None:
            return known
        noise = self._noise.get(key)
        if noise is None:
            noise = self._noise[key] = sum(
                noise_term(part.load[job_type], window_s)
                for part in self.parts.values()
                if job_type in part.sums
            )
        known = self._host_spread[key] = self.sums[job_type].spread(noise, window_s)
        return known

    def median_io_per_job(self, job_type: str) -> float | None:
        """The median io_per_job of the type's measured VMs (None: none measured yet); computed
        on first use, once per index."""
        if job_type not in self._medians:
            values = [v for part in self.parts.values() for v in part.io_per_job.get(job_type, ())]
            self._medians[job_type] = statistics.median(values) if values else None
        return self._medians[job_type]

    def median_io_per_busy_s(self, job_type: str) -> float | None:
        """The median of the type's metered VMs' I/O per busy second (None: none ran lately);
        computed on first use, once per index.

        Known once a type's first jobs are metered, long before a VM has the completions
        io_per_job waits for. A median, not a pooled ratio or the highest: one VM's figure is
        off either way while its windows fill (busy time counts at a job's end, by the
        completion path, its I/O at Dom0's next sample, up to an interval plus the delay later;
        a running job's I/O is metered before its busy time), and the median ignores the tails
        on both sides."""
        if job_type not in self._medians_per_busy_s:
            rates = [
                r for part in self.parts.values() for r in part.io_per_busy_s.get(job_type, ())
            ]
            self._medians_per_busy_s[job_type] = statistics.median(rates) if rates else None
        return self._medians_per_busy_s[job_type]


def _newest_telemetry(hosts: Iterable[HostView]) -> float | None:
    """The latest `last_telemetry_at` of these hosts (None: none has reported)."""
    return max(
        (h.last_telemetry_at for h in hosts if h.last_telemetry_at is not None), default=None
    )


def _vm_ids(part: HostPart | None) -> KeysView[str]:
    """The ids of the VMs a host lists (none: the host is not in the index)."""
    return part.vms.keys() if part is not None else _NO_VMS


_NO_VMS: KeysView[str] = {}.keys()


class FleetSnapshot:
    """The fleet at `taken_at`, indexed once; mutable only through `claim()` and `job_ended()`.

    A decision "consumes" its placement at once (Nova-style), so the next decision sees it:
    `claims(vm_id)` counts placements this dispatcher made that the VM's reported
    `outstanding_jobs` does not include yet. `job_ended()` records when this dispatcher's last
    job on a VM ended: Dom0's meter is a window behind, and I/O in it from jobs that have ended
    is no demand now (`pipeline.policy.load.vm_unexplained_io_ops_per_s`).

    Per job type it also keeps what a VM that has not run lately borrows from its peers (the
    median io_per_job, the pooled service time) and, built on first use and kept current by
    `claim()`, the VMs holding no job (`idle_candidates`), so a policy can look for an idle VM
    in O(1) per probe however large the fleet.

    Values derived from it may be kept on it (`memo`, `host_memo`, `vm_memo`), each dropped by
    the claims that can change it: a claim changes its VM's count, and its host's occupancy
    (which of its VMs hold a job) only when the VM goes from idle to busy or back.
    """

    __slots__ = (
        "_by_type",
        "_claimed_hosts",
        "_claims",
        "_ended_at",
        "_host_memo",
        "_hosts",
        "_idle",
        "_idle_at",
        "_index",
        "_memo",
        "_service_s",
        "_vm_memo",
        "claims_made",
        "config",
        "taken_at",
        "telemetry_watermark",
    )

    def __init__(
        self,
        hosts: Iterable[HostView] | FleetIndex,
        taken_at: float,
        config: PolicyConfig = DEFAULT_POLICY_CONFIG,
    ) -> None:
        self.taken_at = taken_at
        self.config = config
        index = hosts if isinstance(hosts, FleetIndex) else FleetIndex.of(hosts)
        # Shared with the index (and every snapshot taken of it): read, never changed here.
        self._index = index
        self._hosts = index.hosts
        self._by_type = index.by_type
        self._service_s = index.service_s
        #: The newest telemetry of any host: how far the pipeline has got in event time.
        self.telemetry_watermark = index.telemetry_watermark
        self._claims: dict[str, int] = {}
        # VM -> when this dispatcher's last job on it ended (`job_ended`).
        self._ended_at: dict[str, float] = {}
        #: Claims (and job ends) made on this snapshot so far: a caller can tell it changed
        #: since it last asked.
        self.claims_made = 0
        # The host of each claim and job end, in order (`hosts_claimed_since`).
        self._claimed_hosts: list[str] = []
        # job type -> VMs holding no job, and each one's position there (built on first use).
        self._idle: dict[str, list[VmView]] = {}
        self._idle_at: dict[str, dict[str, int]] = {}
        # Derived values a decision may reuse: per key (never changed by a claim), per host
        # (dropped when its occupancy changes), per VM (dropped by a claim on it, or when its
        # host's occupancy changes). See `memo`, `host_memo`, `vm_memo`.
        self._memo: dict[object, object] = {}
        self._host_memo: dict[str, dict[object, object]] = {}
        self._vm_memo: dict[str, dict[object, object]] = {}

    # --- lookups ----------------------------------------------------------------------------

    def host(self, host_id: str) -> HostView:
        return self._hosts[host_id]

    def hosts(self) -> Iterable[HostView]:
        return self._hosts.values()

    def vm(self, vm_id: str) -> VmView:
        vm = self._index.vm(vm_id)
        if vm is None:
            raise KeyError(vm_id)
        return vm

    def candidates(self, job_type: str) -> Sequence[VmView]:
        """The VMs serving `job_type`, in (host_id, vm_id) order; empty if none."""
        return self._by_type.get(job_type, ())

    def idle_candidates(self, job_type: str) -> Sequence[VmView]:
        """The VMs serving `job_type` that hold no job now (reported nor claimed), in no order.

        Built once per type per snapshot (O(VMs of the type)), then kept current by `claim()`
        in O(1); a policy must not hold on to it across a claim.
        """
        idle = self._idle.get(job_type)
        if idle is None:
            idle = [vm for vm in self.candidates(job_type) if self.outstanding(vm) == 0]
            self._idle[job_type] = idle
            self._idle_at[job_type] = {vm.vm_id: i for i, vm in enumerate(idle)}
        return idle

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
        vm = self._index.vm(vm_id)
        if vm is None:
            raise KeyError(f"claim on VM {vm_id!r}, which is not in the snapshot")
        was_busy = self.outstanding(vm) > 0
        self._claims[vm_id] = self._claims.get(vm_id, 0) + count
        self.claims_made += 1
        self._claimed_hosts.append(vm.host_id)
        busy = self.outstanding(vm) > 0
        if busy == was_busy:
            self._vm_memo.pop(vm_id, None)  # its host's occupancy is as it was
        else:
            self._occupancy_changed(vm.host_id)
        positions = self._idle_at.get(vm.job_type)
        if positions is None:
            return  # the idle index of this type is not built yet
        if vm_id in positions and busy:
            # Swap-remove: the VM is idle no more.
            idle = self._idle[vm.job_type]
            at = positions.pop(vm_id)
            last = idle.pop()
            if last.vm_id != vm_id:
                idle[at] = last
                positions[last.vm_id] = at
        elif vm_id not in positions and not busy and self._hosts[vm.host_id].accepts_jobs:
            # A release emptied it: idle again.
            positions[vm_id] = len(self._idle[vm.job_type])
            self._idle[vm.job_type].append(vm)

    def hosts_claimed_since(self, claims_made: int) -> Sequence[str]:
        """The hosts of the claims (and job ends) made after the first `claims_made` (in
        order, repeats kept): where a value derived before may have changed since (see
        `pipeline.policy.scan`)."""
        return self._claimed_hosts[claims_made:]

    def job_ended(self, vm_id: str, at: float) -> None:
        """One of this dispatcher's jobs on `vm_id` ended at `at` (kept: the latest end)."""
        vm = self._index.vm(vm_id)
        if vm is None:
            return
        if at > self._ended_at.get(vm_id, -math.inf):
            self._ended_at[vm_id] = at
            # It changes the host as a claim does (the meter's unexplained part): counted with
            # the claims, so what was derived from the host before is derived again.
            self.claims_made += 1
            self._claimed_hosts.append(vm.host_id)
            self._occupancy_changed(vm.host_id)

    def _occupancy_changed(self, host_id: str) -> None:
        """A VM of the host went from idle to busy or back, or a job of one ended: what was
        derived from the host's occupancy is derived again."""
        self._host_memo.pop(host_id, None)
        for vm in self._hosts[host_id].vms:
            self._vm_memo.pop(vm.vm_id, None)

    def last_job_ended_at(self, vm: VmView) -> float | None:
        """When this dispatcher's last job on the VM ended, as far as it knows (None: none
        ended lately)."""
        return self._ended_at.get(vm.vm_id)

    def outstanding(self, vm: VmView) -> int:
        """Jobs on the VM not finished: as reported, plus local claims (a release, a negative
        claim, never takes it below zero)."""
        return max(0, vm.outstanding_jobs + self._claims.get(vm.vm_id, 0))

    # --- memos ------------------------------------------------------------------------------

    def memo(self, key: object, compute: Callable[[], T]) -> T:
        """`compute()` once per snapshot for a value no claim changes (e.g. a VM's job rate)."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def memoized(self, key: object) -> object | None:
        """What `memo(key, ...)` computed on this snapshot, if it did (else None)."""
        return self._memo.get(key)

    def host_memo(self, host_id: str, key: object, compute: Callable[[], T]) -> T:
        """`compute()` once per snapshot and host, for a value that depends on the host's
        occupancy (which of its VMs hold a job, and when their last jobs ended), never on how
        many jobs a VM holds (e.g. its demand now: one job's rate per busy VM).

        Dropped by a claim that takes one of its VMs from idle to busy or back, and by a job's
        end on one of them; a claim behind a running job leaves it standing."""
        memo = self._host_memo.setdefault(host_id, {})
        try:
            return memo[key]  # type: ignore[return-value]
        except KeyError:
            value = memo[key] = compute()
            return value

    def vm_memo(self, vm_id: str, key: object, compute: Callable[[], T]) -> T:
        """`compute()` once per snapshot and VM, for a value of the VM that depends on its own
        count (reported plus claimed) and on its host's occupancy (which of the host's VMs hold
        a job, when their last jobs ended), never on how many jobs another VM holds.

        Dropped by a claim on the VM, and by a claim on any VM of its host that takes that VM
        from idle to busy or back (or a job of it that ends): a claim behind a running job on
        one VM leaves its neighbours' values standing. At full load that is most claims, so
        the verdicts of a claimed host's other VMs are kept (`pipeline.policy.io_aware`)."""
        memo = self._vm_memo.get(vm_id)
        if memo is None:
            memo = self._vm_memo[vm_id] = {}
        try:
            return memo[key]  # type: ignore[return-value]
        except KeyError:
            value = memo[key] = compute()
            return value

    def vm_memoized(self, vm_id: str, key: object) -> object | None:
        """What `vm_memo(vm_id, key, ...)` computed and still stands, if any (else None)."""
        memo = self._vm_memo.get(vm_id)
        return None if memo is None else memo.get(key)

    # --- estimates --------------------------------------------------------------------------

    def io_per_job_estimate(self, vm: VmView) -> float | None:
        """The VM's io_per_job, else the median of measured VMs of its type, else None."""
        if vm.io_per_job is not None:
            return vm.io_per_job
        return self._index.median_io_per_job(vm.job_type)

    def type_io_per_job(self, job_type: str) -> float | None:
        """The median io_per_job of the type's measured VMs (None: none measured yet)."""
        return self._index.median_io_per_job(job_type)

    def service_s_estimate(self, vm: VmView) -> float | None:
        """How long a job takes on this VM: the longer of its own measured service time and its
        type's pooled one (either if only one is known; None if neither).

        Its own, because a VM on a slowed host takes longer and should look it; never shorter
        than its type's, because a VM's own mean over a few seconds may rest on one or two jobs
        (sizes vary), and a VM that happened to run a tiny job is not a fast VM.
        """
        known = [s for s in (vm.service_s, self._service_s.get(vm.job_type)) if s is not None]
        return max(known) if known else None

    def type_io_ops_per_busy_s(self, job_type: str) -> float | None:
        """The median I/O per busy second of the type's VMs that were metered lately (Dom0's
        meter over the guest's busy fraction); None if none of them has run lately."""
        return self._index.median_io_per_busy_s(job_type)

    def type_service_s(self, job_type: str) -> float | None:
        """Mean service time of the type's jobs, pooled over its VMs (None: none ran lately)."""
        return self._service_s.get(job_type)

    def host_type_service_s(self, host_id: str, job_type: str) -> float | None:
        """Mean service time of the type's jobs on `host_id`: its own VMs' of the type, shrunk
        toward the type's pooled one as far as it is noise, and slower than that only as far as
        its limit says (`FleetIndex.host_service_s`, over the meter's window); the type's if
        they ran nothing lately (None: no VM of it did)."""
        return self._index.host_service_s(host_id, job_type, self.config.meter_window_s)

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
