"""The fleet as every dispatcher sees it: the latest record of each compacted topic, joined.

`FleetView` holds plain state (host and VM registrations, per-VM measured state, limits) and
turns it into a policy `FleetSnapshot`. It is fed by `pipeline.fleet.consumer`, which reads *all*
partitions of `hosts`, `vms`, `vm-state` and `limits` in every worker (no consumer group), so
each dispatcher instance sees every host; the simulator feeds it the same events directly
(`put_*`). Nothing here touches Kafka or reads a clock.

Precedence, stated once:
- a host's limit: operator override > configured at `vmlb dom0 --io-limit` > calibrated;
- a VM's io_per_job: operator override > measured by the pipeline > calibrated;
- a VM's host: its registration in `vms` (a migration re-registers the VM on its new host).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import EventError
from pipeline.events import (
    DispatchLoad,
    Event,
    HostAdmin,
    HostMode,
    HostRegistration,
    HostStatus,
    LimitField,
    LimitScope,
    LimitSetting,
    LimitSource,
    VmRegistration,
    VmState,
    VmStatus,
    limit_key,
)
from pipeline.policy.snapshot import FleetIndex, FleetSnapshot, HostView, PolicyConfig, VmView

#: The compacted topics a FleetView is built from (logical names from topics.yaml).
FLEET_TOPICS = ("hosts", "vms", "vm-state", "limits", "host-admin", "dispatch-load")


@dataclass(frozen=True)
class Sourced:
    """A value and where it came from (for operators: why is this host's limit 800?)."""

    value: float | None
    source: str | None


class FleetView:
    """Latest registrations, measurements and limits; builds snapshots for the policy."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostRegistration] = {}
        self.vms: dict[str, VmRegistration] = {}
        self.vm_states: dict[str, VmState] = {}
        self.limits: dict[str, LimitSetting] = {}
        #: Operators' cordons and drains, by host.
        self.host_admin: dict[str, HostAdmin] = {}
        #: Each jobs partition's in-flight jobs per VM, as its dispatcher last published them.
        self.dispatch_load: dict[int, DispatchLoad] = {}
        #: The jobs partitions this worker's dispatcher owns: it counts their in-flight jobs
        #: itself, exactly, so their published loads are not added again.
        self.owned_partitions: frozenset[int] = frozenset()
        self._others_in_flight: dict[str, int] = {}
        self._load_version = 0
        #: Checks a VM registration before it is applied (the worker refuses queue topics not
        #: of the template's form); raises EventError.
        self.check_vm: Callable[[VmRegistration], None] | None = None
        #: Bumped on every change, so a cached snapshot knows when it is out of date.
        self.version = 0
        #: Bumped on every change of `limits` (a VM's view depends on them, too).
        self._limits_version = 0
        #: vm_id -> (registration, state, limits version, load version, view): a VM's view is
        #: rebuilt only when one of those changed, so a snapshot of a large fleet costs little
        #: where little moved.
        self._vm_views: dict[str, tuple[VmRegistration, VmState | None, int, int, VmView]] = {}
        #: How many `limits` settings name each target (host or VM id): one named by none
        #: takes what the fleet reported without a lookup per source.
        self._limited: dict[str, int] = {}
        #: The VMs registered on each host (any status), for rebuilding one host's view.
        self._vms_on: dict[str, set[str]] = {}
        #: The fleet's index as of the last snapshot, and the hosts where something changed
        #: since (None: all of them): a snapshot rebuilds only those, so a 10,000-VM fleet whose
        #: telemetry moved 500 VMs since the last one rebuilds their ten hosts, not 200.
        self._stale_hosts: set[str] | None = None
        self._index: FleetIndex | None = None

    # --- feeding ----------------------------------------------------------------------------

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of a fleet topic. A tombstone (no value) deletes the key.

        Raises `pipeline.errors.EventError` for a value that does not parse; the caller
        dead-letters it and goes on.
        """
        if value is None:
            if key is not None:
                self.forget(topic, key.decode(errors="replace"))
            return
        if topic == "hosts":
            host = HostRegistration.from_bytes(value)
            _check_key(topic, key, host)
            self.put_host(host)
        elif topic == "vms":
            vm = VmRegistration.from_bytes(value)
            _check_key(topic, key, vm)
            if self.check_vm is not None:
                self.check_vm(vm)
            self.put_vm(vm)
        elif topic == "vm-state":
            state = VmState.from_bytes(value)
            _check_key(topic, key, state)
            self.put_state(state)
        elif topic == "limits":
            setting = LimitSetting.from_bytes(value)
            _check_key(topic, key, setting)
            self.put_limit(setting)
        elif topic == "host-admin":
            admin = HostAdmin.from_bytes(value)
            _check_key(topic, key, admin)
            self.put_admin(admin)
        elif topic == "dispatch-load":
            load = DispatchLoad.from_bytes(value)
            _check_key(topic, key, load)
            self.put_load(load)
        else:
            raise EventError(f"not a fleet topic: {topic}")

    def put_host(self, host: HostRegistration) -> None:
        self.hosts[host.host_id] = host
        self._changed(host.host_id)

    def put_vm(self, vm: VmRegistration) -> None:
        old = self.vms.get(vm.vm_id)
        if old is not None:
            self._vms_on.get(old.host_id, set()).discard(vm.vm_id)
            self._changed(old.host_id)
        self.vms[vm.vm_id] = vm
        self._vms_on.setdefault(vm.host_id, set()).add(vm.vm_id)
        self._changed(vm.host_id)

    def put_state(self, state: VmState) -> None:
        self.vm_states[state.vm_id] = state
        self._changed_vm(state.vm_id)

    def put_limit(self, setting: LimitSetting) -> None:
        key = limit_key(setting.scope, setting.target_id, setting.field, setting.source)
        self._count_limit(self.limits.get(key), -1)
        if setting.value is None:
            self.limits.pop(key, None)
        else:
            self.limits[key] = setting
            self._count_limit(setting, +1)
        self._limits_version += 1
        self._changed_target(setting)

    def put_admin(self, admin: HostAdmin) -> None:
        self.host_admin[admin.host_id] = admin
        self._changed(admin.host_id)

    def put_load(self, load: DispatchLoad) -> None:
        self.dispatch_load[load.partition] = load
        self._recount_others()

    def own_partitions(self, partitions: Iterable[int]) -> None:
        """The dispatcher now owns these jobs partitions (after a rebalance)."""
        self.owned_partitions = frozenset(partitions)
        self._recount_others()

    def host_mode(self, host_id: str) -> HostAdmin | None:
        """The operator's cordon or drain of a host, if any (None: active)."""
        admin = self.host_admin.get(host_id)
        return admin if admin is not None and admin.mode is not HostMode.ACTIVE else None

    def forget(self, topic: str, key: str) -> None:
        """A tombstone: the key's record is deleted from its topic."""
        if topic == "dispatch-load":
            if key.isdigit():
                self.dispatch_load.pop(int(key), None)
            self._recount_others()
            return
        if topic in ("vms", "vm-state"):
            self._changed_vm(key)  # its host's view, before the registration is gone
        elif topic in ("hosts", "host-admin"):
            self._changed(key)
        old = self._table(topic).pop(key, None)
        if topic == "limits":
            self._limits_version += 1
            if isinstance(old, LimitSetting):
                self._count_limit(old, -1)
                self._changed_target(old)
            else:
                self.version += 1
        if topic == "vms":
            self._vm_views.pop(key, None)
            if isinstance(old, VmRegistration):
                self._vms_on.get(old.host_id, set()).discard(key)

    def _count_limit(self, setting: LimitSetting | None, by: int) -> None:
        if setting is None:
            return
        count = self._limited.get(setting.target_id, 0) + by
        if count > 0:
            self._limited[setting.target_id] = count
        else:
            self._limited.pop(setting.target_id, None)

    def _changed_target(self, setting: LimitSetting) -> None:
        if setting.scope is LimitScope.HOST:
            self._changed(setting.target_id)
        else:
            self._changed_vm(setting.target_id)

    def _changed(self, host_id: str) -> None:
        """Something of `host_id` (its registration, a VM on it, their state) changed."""
        self.version += 1
        if self._stale_hosts is not None:
            self._stale_hosts.add(host_id)

    def _changed_vm(self, vm_id: str) -> None:
        vm = self.vms.get(vm_id)
        if vm is not None:
            self._changed(vm.host_id)
        else:
            self.version += 1  # not registered: in no host's view yet

    def _table(self, topic: str) -> dict[Any, Any]:
        if topic == "dispatch-load":
            return self.dispatch_load
        return {
            "hosts": self.hosts,
            "vms": self.vms,
            "vm-state": self.vm_states,
            "limits": self.limits,
            "host-admin": self.host_admin,
        }[topic]

    def _recount_others(self) -> None:
        others: dict[str, int] = {}
        for partition, load in self.dispatch_load.items():
            if partition in self.owned_partitions:
                continue
            for vm_id, count in load.in_flight.items():
                others[vm_id] = others.get(vm_id, 0) + count
        if others != self._others_in_flight:
            old, self._others_in_flight = self._others_in_flight, others
            self._load_version += 1
            self.version += 1
            for vm_id in old.keys() | others.keys():
                if old.get(vm_id) != others.get(vm_id):
                    self._changed_vm(vm_id)

    # --- derived values ---------------------------------------------------------------------

    def _limit(
        self, scope: LimitScope, target: str, field: LimitField, source: LimitSource
    ) -> float | None:
        setting = self.limits.get(limit_key(scope, target, field, source))
        return setting.value if setting else None

    def _sourced(
        self, scope: LimitScope, target: str, field: LimitField, reported: tuple[str, float | None]
    ) -> Sourced:
        """The operator's override, else what the fleet `reported`, else the calibrated value."""
        if target not in self._limited:
            return Sourced(reported[1], reported[0]) if reported[1] is not None else _UNKNOWN
        return _first(
            ("operator", self._limit(scope, target, field, LimitSource.OPERATOR)),
            reported,
            ("calibrated", self._limit(scope, target, field, LimitSource.CALIBRATED)),
        )

    def host_limit(self, host_id: str) -> Sourced:
        """Operator override, else the limit its Dom0 was configured with, else calibrated."""
        registration = self.hosts.get(host_id)
        configured = registration.io_limit_ops_per_s if registration else None
        return self._sourced(
            LimitScope.HOST, host_id, LimitField.IO_LIMIT, ("configured", configured)
        )

    def vm_io_per_job(self, vm_id: str) -> Sourced:
        """Operator override, else the pipeline's running estimate, else calibrated."""
        state = self.vm_states.get(vm_id)
        measured = state.io_per_job if state else None
        return self._sourced(LimitScope.VM, vm_id, LimitField.IO_PER_JOB, ("measured", measured))

    def running_vms(self) -> Iterable[VmRegistration]:
        """VMs registered running on a host that is registered up. A VM naming a host nobody
        registered stays out (no phantom host) until that host's registration arrives."""
        for vm in self.vms.values():
            if vm.status is not VmStatus.RUNNING:
                continue
            host = self.hosts.get(vm.host_id)
            if host is None or host.status is HostStatus.DOWN:
                continue
            yield vm

    def registered_host(self, vm_id: str) -> str | None:
        """The host a VM is registered on (None: not registered)."""
        vm = self.vms.get(vm_id)
        return vm.host_id if vm is not None else None

    def _build_vm_view(self, vm: VmRegistration, state: VmState | None) -> VmView:
        vm_id = vm.vm_id
        if vm_id in self._limited:
            io_per_job = self.vm_io_per_job(vm_id).value
        else:  # no setting names it: what the pipeline measured (`vm_io_per_job`)
            io_per_job = state.io_per_job if state is not None else None
        # Other dispatchers' in-flight jobs; this one adds its own, exactly (snapshots).
        others = self._others_in_flight.get(vm_id, 0)
        if state is None:
            return VmView(
                vm_id, vm.host_id, vm.job_type, io_per_job=io_per_job, outstanding_jobs=others
            )
        return VmView(  # positional: a VM's view is built for every state it reports
            vm_id,
            vm.host_id,
            vm.job_type,
            state.load_jobs_per_s,
            io_per_job,
            state.io_ops_per_s,
            others,
            state.busy_fraction,
        )

    def host_views(self) -> list[HostView]:
        """Every host with at least one running VM (or registered up), for a snapshot, in
        host-id order."""
        return list(self.index().hosts.values())

    def index(self) -> FleetIndex:
        """The fleet indexed for a snapshot; only the hosts changed since the last call are
        built again (`FleetIndex.updated`), all of them after a change that may touch any."""
        stale, self._stale_hosts = self._stale_hosts, set()
        if stale is None or self._index is None:
            views = (self._build_host_view(h) for h in sorted(set(self.hosts) | set(self._vms_on)))
            self._index = FleetIndex.of(view for view in views if view is not None)
        elif stale:
            self._index = self._index.updated({h: self._build_host_view(h) for h in stale})
        return self._index

    def _build_host_view(self, host_id: str) -> HostView | None:
        """The host's view: None for a host not registered, down, or registered otherwise
        than up with no running VM (a VM naming a host nobody registered stays out).

        Each VM's view is kept until its registration, its state, a limit or the others'
        load changes: a host rebuilt for one VM's new state builds that VM's view only."""
        host = self.hosts.get(host_id)
        if host is None or host.status is HostStatus.DOWN:
            return None
        cache = self._vm_views
        limits_version, load_version = self._limits_version, self._load_version
        views: list[VmView] = []
        last_telemetry: float | None = None
        for vm_id in sorted(self._vms_on.get(host_id, ())):
            vm = self.vms[vm_id]
            if vm.status is not VmStatus.RUNNING:
                continue
            state = self.vm_states.get(vm_id)
            cached = cache.get(vm_id)
            if (
                cached is not None
                and cached[0] is vm
                and cached[1] is state
                and cached[2] == limits_version
                and cached[3] == load_version
            ):
                view = cached[4]
            else:
                view = self._build_vm_view(vm, state)
                cache[vm_id] = (vm, state, limits_version, load_version, view)
            views.append(view)
            # Only telemetry sampled on this host counts: a VM that just migrated here brings
            # no evidence that this host's Dom0 is alive.
            if state is not None and state.host_id == vm.host_id:
                at = state.last_telemetry_at  # never negative (`EpochSeconds`)
                if at is not None and (last_telemetry is None or at > last_telemetry):
                    last_telemetry = at
        if not views and host.status is not HostStatus.UP:
            return None
        return HostView(
            host_id=host_id,
            limit_ops_per_s=self.host_limit(host_id).value,
            last_telemetry_at=last_telemetry,
            vms=tuple(views),  # in VM-id order
            accepts_jobs=self.host_mode(host_id) is None,
        )

    def snapshot(self, now: float, config: PolicyConfig) -> FleetSnapshot:
        return FleetSnapshot(self.index(), taken_at=now, config=config)

    def serves(self, job_type: str) -> bool:
        return any(vm.job_type == job_type for vm in self.running_vms())

    def others_in_flight(self, vm_id: str) -> int:
        """Jobs of partitions this worker does not own, in flight on the VM."""
        return self._others_in_flight.get(vm_id, 0)


def _check_key(topic: str, key: bytes | None, event: Event) -> None:
    """On a compacted topic the key is what compaction keeps: it must be the event's own key,
    or a record keyed `alias` would be applied as its payload's id and both would be kept."""
    expected = event.key()
    if key != expected:
        raise EventError(
            f"{type(event).__name__}: the message key {key[:100] if key else key!r} is not "
            f"{expected!r}; on {topic} a record is keyed by its id"
        )


_UNKNOWN = Sourced(None, None)


def _first(*candidates: tuple[str, float | None]) -> Sourced:
    """The first known value, with the name of where it came from."""
    for source, value in candidates:
        if value is not None:
            return Sourced(value, source)
    return _UNKNOWN
