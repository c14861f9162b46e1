"""A snapshot rebuilds only the hosts where something changed: whatever the records and their
order, its hosts and its index are those of a view built afresh from the same records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events import (
    DispatchLoad,
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
from pipeline.fleet.view import FleetView
from tests.unit.pipeline.fleet_builders import NOW

HOSTS = ["h1", "h2", "h3"]
VMS = ["a", "b", "c", "d", "e"]

Record = tuple[str, bytes, bytes | None]

hosts = st.builds(
    lambda h, status, limit: (
        "hosts",
        h.encode(),
        HostRegistration(
            host_id=h, status=status, io_limit_ops_per_s=limit, registered_at=NOW
        ).to_bytes(),
    ),
    st.sampled_from(HOSTS),
    st.sampled_from(list(HostStatus)),
    st.sampled_from([None, 500.0, 1000.0]),
)
vms = st.builds(
    lambda v, h, status, job_type: (
        "vms",
        v.encode(),
        VmRegistration(
            vm_id=v,
            host_id=h,
            job_type=job_type,
            queue_topic=f"t.queue.{v}",
            status=status,
            registered_at=NOW,
        ).to_bytes(),
    ),
    st.sampled_from(VMS),
    st.sampled_from(HOSTS),
    st.sampled_from([VmStatus.RUNNING, VmStatus.RUNNING, VmStatus.STOPPED]),
    st.sampled_from(["io", "cpu"]),
)
states = st.builds(
    lambda v, h, io, at, per_job, load: (
        "vm-state",
        v.encode(),
        VmState(
            vm_id=v,
            host_id=h,
            updated_at=NOW,
            io_ops_per_s=io,
            io_per_job=per_job,
            load_jobs_per_s=load,
            busy_fraction=0.1 if load else 0.0,
            last_telemetry_at=at,
        ).to_bytes(),
    ),
    st.sampled_from(VMS),
    st.sampled_from(HOSTS),
    st.floats(0, 2000),
    st.sampled_from([None, NOW - 5, NOW]),
    st.sampled_from([None, 10.0, 30.0, 45.5]),
    st.sampled_from([0.0, 1.0, 2.5]),
)
limits = st.builds(
    lambda scope, target, value: (
        "limits",
        b"",
        LimitSetting(
            scope=scope,
            target_id=target,
            field=LimitField.IO_LIMIT if scope is LimitScope.HOST else LimitField.IO_PER_JOB,
            source=LimitSource.OPERATOR,
            value=value,
            set_at=NOW,
        ).to_bytes(),
    ),
    st.sampled_from(list(LimitScope)),
    st.sampled_from(HOSTS + VMS),
    st.sampled_from([None, 50.0, 700.0]),
)
admins = st.builds(
    lambda h, mode: (
        "host-admin",
        h.encode(),
        HostAdmin(host_id=h, mode=mode, set_at=NOW).to_bytes(),
    ),
    st.sampled_from(HOSTS),
    st.sampled_from(list(HostMode)),
)
loads = st.builds(
    lambda partition, counts: (
        "dispatch-load",
        str(partition).encode(),
        DispatchLoad(partition=partition, in_flight=counts, at=NOW).to_bytes(),
    ),
    st.integers(0, 2),
    st.dictionaries(st.sampled_from(VMS), st.integers(1, 3), max_size=3),
)
tombstones = st.builds(
    lambda topic, key: (topic, key.encode(), None),
    st.sampled_from(["hosts", "vms", "vm-state", "host-admin", "dispatch-load"]),
    st.sampled_from(HOSTS + VMS + ["0", "1"]),
)
limit_tombstones = st.builds(
    lambda scope, target: (
        "limits",
        limit_key(
            scope,
            target,
            LimitField.IO_LIMIT if scope is LimitScope.HOST else LimitField.IO_PER_JOB,
            LimitSource.OPERATOR,
        ).encode(),
        None,
    ),
    st.sampled_from(list(LimitScope)),
    st.sampled_from(HOSTS + VMS),
)
records = st.one_of(hosts, vms, states, limits, admins, loads, tombstones, limit_tombstones)


def applied(view: FleetView, record: Record) -> None:
    topic, key, value = record
    if topic == "limits" and value is not None:
        setting = LimitSetting.from_bytes(value)
        view.put_limit(setting)  # keyed by its encoding: put directly
        return
    view.apply(topic, key, value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(records, min_size=1, max_size=6), min_size=1, max_size=8))
def test_the_hosts_rebuilt_incrementally_are_those_built_afresh(rounds: list[list[Record]]) -> None:
    live = FleetView()
    live.own_partitions([0])
    seen: list[Record] = []
    for batch in rounds:
        for record in batch:
            applied(live, record)
            seen.append(record)
        fresh = FleetView()
        fresh.own_partitions([0])
        for record in seen:
            applied(fresh, record)
        assert live.host_views() == fresh.host_views()
        kept, built = live.index(), fresh.index()
        # The same hosts in the same (host-id) order, whether the index kept their places or
        # sorted them again; each type's candidates and sums over hosts, whether derived
        # again or kept from the index before; the VM lookup, whether copied or shared.
        assert list(kept.parts) == list(built.parts)
        assert kept.parts == built.parts
        assert list(kept.hosts) == list(built.hosts)
        assert kept.host_of == built.host_of
        assert all(kept.vm(vm_id) == built.vm(vm_id) for vm_id in built.host_of)
        assert kept.by_type == built.by_type
        assert kept._blocks == built._blocks  # what a later update joins `by_type` from
        assert kept.service_s == built.service_s
        assert kept.sums == built.sums  # exact: fixed-point terms, old ones out, new ones in
        assert kept.telemetry_watermark == built.telemetry_watermark
        for job_type in ("io", "cpu"):
            assert kept.median_io_per_job(job_type) == built.median_io_per_job(job_type)
            assert kept.median_io_per_busy_s(job_type) == built.median_io_per_busy_s(job_type)
            for host_id in built.parts:
                assert kept.host_service_s(host_id, job_type, 5.0) == built.host_service_s(
                    host_id, job_type, 5.0
                )


def test_a_limit_deleted_by_its_tombstone_is_gone_from_the_next_snapshot() -> None:
    view = FleetView()
    view.apply(
        "hosts",
        b"h1",
        HostRegistration(host_id="h1", io_limit_ops_per_s=1000.0, registered_at=NOW).to_bytes(),
    )
    override = LimitSetting(
        scope=LimitScope.HOST,
        target_id="h1",
        field=LimitField.IO_LIMIT,
        source=LimitSource.OPERATOR,
        value=300.0,
        set_at=NOW,
    )
    view.put_limit(override)
    assert view.host_views()[0].limit_ops_per_s == 300.0
    key = limit_key(override.scope, override.target_id, override.field, override.source)
    view.apply("limits", key.encode(), None)
    assert view.host_views()[0].limit_ops_per_s == 1000.0
