"""FleetView: precedence of limits and io_per_job, tombstones, who is in a snapshot, migration."""

import json

import pytest

from pipeline.errors import EventError
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
)
from pipeline.fleet.view import FleetView, Sourced
from pipeline.policy.snapshot import PolicyConfig

NOW = 1_000.0
CONFIG = PolicyConfig()


def add_host(
    view: FleetView,
    host_id: str,
    io_limit: float | None = None,
    status: HostStatus = HostStatus.UP,
) -> None:
    host = HostRegistration(
        host_id=host_id, status=status, io_limit_ops_per_s=io_limit, registered_at=NOW
    )
    view.apply("hosts", host.key(), host.to_bytes())


def add_vm(
    view: FleetView,
    vm_id: str,
    host_id: str,
    job_type: str = "io",
    status: VmStatus = VmStatus.RUNNING,
) -> None:
    vm = VmRegistration(
        vm_id=vm_id,
        host_id=host_id,
        job_type=job_type,
        queue_topic=f"t.queue.{vm_id}",
        status=status,
        registered_at=NOW,
    )
    view.apply("vms", vm.key(), vm.to_bytes())


def add_state(view: FleetView, vm_id: str, host_id: str, **fields: float | None) -> None:
    state = VmState(vm_id=vm_id, host_id=host_id, updated_at=NOW, **fields)
    view.apply("vm-state", state.key(), state.to_bytes())


def limit_setting(
    scope: LimitScope, target: str, source: LimitSource, value: float | None
) -> LimitSetting:
    field = LimitField.IO_LIMIT if scope is LimitScope.HOST else LimitField.IO_PER_JOB
    return LimitSetting(
        scope=scope, target_id=target, field=field, source=source, value=value, set_at=NOW
    )


def set_limit(
    view: FleetView, scope: LimitScope, target: str, source: LimitSource, value: float | None
) -> None:
    setting = limit_setting(scope, target, source, value)
    view.apply("limits", setting.key(), setting.to_bytes())


def snapshot_hosts(view: FleetView) -> dict[str, list[str]]:
    """host_id -> its VM ids, as a snapshot sees them."""
    snapshot = view.snapshot(NOW, CONFIG)
    return {host.host_id: [vm.vm_id for vm in host.vms] for host in snapshot.hosts()}


# --- precedence -----------------------------------------------------------------------------


def test_host_limit_operator_wins_over_configured_wins_over_calibrated():
    view = FleetView()
    add_host(view, "h1", io_limit=800.0)
    set_limit(view, LimitScope.HOST, "h1", LimitSource.CALIBRATED, 700.0)
    set_limit(view, LimitScope.HOST, "h1", LimitSource.OPERATOR, 500.0)
    assert view.host_limit("h1") == Sourced(500.0, "operator")
    assert view.snapshot(NOW, CONFIG).host("h1").limit_ops_per_s == 500.0

    set_limit(view, LimitScope.HOST, "h1", LimitSource.OPERATOR, None)  # `vmlb limit clear`
    assert view.host_limit("h1") == Sourced(800.0, "configured")

    add_host(view, "h1", io_limit=None)  # dom0 restarted without --io-limit
    assert view.host_limit("h1") == Sourced(700.0, "calibrated")
    assert view.snapshot(NOW, CONFIG).host("h1").limit_ops_per_s == 700.0


def test_host_limit_is_unknown_without_any_source():
    view = FleetView()
    add_host(view, "h1")
    assert view.host_limit("h1") == Sourced(None, None)
    assert view.snapshot(NOW, CONFIG).host("h1").limit_ops_per_s is None


def test_limits_of_one_host_do_not_apply_to_another():
    view = FleetView()
    add_host(view, "h1")
    add_host(view, "h2")
    set_limit(view, LimitScope.HOST, "h1", LimitSource.OPERATOR, 500.0)
    assert view.host_limit("h2").value is None


def test_io_per_job_operator_wins_over_measured_wins_over_calibrated():
    view = FleetView()
    add_host(view, "h1")
    add_vm(view, "a1", "h1")
    set_limit(view, LimitScope.VM, "a1", LimitSource.CALIBRATED, 30.0)
    assert view.vm_io_per_job("a1") == Sourced(30.0, "calibrated")

    add_state(view, "a1", "h1", io_per_job=40.0)
    assert view.vm_io_per_job("a1") == Sourced(40.0, "measured")

    set_limit(view, LimitScope.VM, "a1", LimitSource.OPERATOR, 50.0)
    assert view.vm_io_per_job("a1") == Sourced(50.0, "operator")
    assert view.snapshot(NOW, CONFIG).vm("a1").io_per_job == 50.0

    set_limit(view, LimitScope.VM, "a1", LimitSource.OPERATOR, None)
    assert view.snapshot(NOW, CONFIG).vm("a1").io_per_job == 40.0


def test_io_per_job_not_yet_measured_falls_back_to_calibrated():
    view = FleetView()
    add_host(view, "h1")
    add_vm(view, "a1", "h1")
    add_state(view, "a1", "h1", io_per_job=None, io_ops_per_s=10.0)
    assert view.vm_io_per_job("a1").value is None
    set_limit(view, LimitScope.VM, "a1", LimitSource.CALIBRATED, 30.0)
    assert view.vm_io_per_job("a1") == Sourced(30.0, "calibrated")


# --- tombstones and clearing ------------------------------------------------------------------


def test_limit_value_null_clears_only_that_source():
    view = FleetView()
    add_host(view, "h1")
    set_limit(view, LimitScope.HOST, "h1", LimitSource.CALIBRATED, 700.0)
    set_limit(view, LimitScope.HOST, "h1", LimitSource.OPERATOR, 500.0)
    set_limit(view, LimitScope.HOST, "h1", LimitSource.OPERATOR, None)
    assert list(view.limits) == ["host/h1/io_limit_ops_per_s/calibrated"]
    assert view.host_limit("h1").source == "calibrated"


def test_limit_tombstone_deletes_the_key():
    view = FleetView()
    add_host(view, "h1")
    setting = limit_setting(LimitScope.HOST, "h1", LimitSource.CALIBRATED, 700.0)
    view.apply("limits", setting.key(), setting.to_bytes())
    view.apply("limits", setting.key(), None)
    assert view.limits == {}
    assert view.host_limit("h1").value is None


def test_tombstones_remove_hosts_vms_and_states_and_bump_the_version():
    view = FleetView()
    add_host(view, "h1")
    add_host(view, "h2")
    add_vm(view, "a1", "h1")
    add_vm(view, "b1", "h2")
    add_state(view, "a1", "h1", io_ops_per_s=100.0, last_telemetry_at=NOW)

    before = view.version
    view.apply("vm-state", b"a1", None)
    assert "a1" not in view.vm_states
    assert view.snapshot(NOW, CONFIG).vm("a1").io_ops_per_s == 0.0
    view.apply("vms", b"a1", None)
    view.apply("hosts", b"h2", None)
    assert view.version == before + 3
    assert "a1" not in view.vms
    assert "h2" not in view.hosts
    # b1's registration stands, but its host is gone: no candidate until it registers again.
    assert snapshot_hosts(view) == {"h1": []}
    add_host(view, "h2")
    assert snapshot_hosts(view) == {"h1": [], "h2": ["b1"]}


def test_tombstone_of_an_unknown_key_is_harmless():
    view = FleetView()
    view.apply("vms", b"never-seen", None)
    view.apply("hosts", None, None)
    assert view.vms == {}
    assert view.hosts == {}


# --- who is in a snapshot ---------------------------------------------------------------------


def test_a_stopped_vm_leaves_the_snapshot_and_stops_serving_its_type():
    view = FleetView()
    add_host(view, "h1")
    add_vm(view, "a1", "h1", job_type="io")
    add_vm(view, "a2", "h1", job_type="cpu")
    assert view.serves("io")
    add_vm(view, "a1", "h1", job_type="io", status=VmStatus.STOPPED)
    assert snapshot_hosts(view) == {"h1": ["a2"]}
    assert not view.serves("io")
    assert not view.snapshot(NOW, CONFIG).serves("io")
    assert view.serves("cpu")


@pytest.mark.parametrize("policy", ["io-aware", "paper", "round-robin"])
def test_a_paused_vm_leaves_the_snapshot_and_receives_no_job_until_resumed(policy):
    import random

    from pipeline.policy.decision import JobRequest, Outcome
    from pipeline.policy.registry import build_policy

    view = FleetView()
    add_host(view, "h1", io_limit=1000.0)
    add_vm(view, "a1", "h1", job_type="io")
    add_state(view, "a1", "h1", last_telemetry_at=NOW, io_ops_per_s=0.0)
    add_vm(view, "a1", "h1", job_type="io", status=VmStatus.PAUSED)
    # Its I/O is 0 because it is frozen: it must not look idle and eligible.
    assert snapshot_hosts(view) == {"h1": []}
    job = JobRequest(job_id="j1", job_type="io")
    decision = build_policy(policy).decide(view.snapshot(NOW, CONFIG), job, random.Random(1))
    assert decision.outcome is not Outcome.DISPATCHED
    add_vm(view, "a1", "h1", job_type="io")  # resumed
    assert snapshot_hosts(view) == {"h1": ["a1"]}


def test_a_down_host_leaves_the_snapshot_with_its_vms():
    view = FleetView()
    add_host(view, "h1")
    add_host(view, "h2")
    add_vm(view, "a1", "h1")
    add_vm(view, "b1", "h2")
    add_host(view, "h1", status=HostStatus.DOWN)
    assert snapshot_hosts(view) == {"h2": ["b1"]}
    assert [vm.vm_id for vm in view.snapshot(NOW, CONFIG).candidates("io")] == ["b1"]
    add_host(view, "h1", status=HostStatus.UP)
    assert snapshot_hosts(view) == {"h1": ["a1"], "h2": ["b1"]}


def test_an_up_host_without_vms_is_in_the_snapshot_and_a_vm_of_an_unknown_host_waits_for_it():
    # A registration onto a host nobody registered made a phantom host; now the VM waits for
    # its host's registration (which may simply arrive a moment later: another topic).
    view = FleetView()
    add_host(view, "empty")
    add_vm(view, "a1", "unregistered")
    assert snapshot_hosts(view) == {"empty": []}
    add_host(view, "unregistered")
    assert snapshot_hosts(view) == {"empty": [], "unregistered": ["a1"]}


def test_snapshot_carries_the_measured_state_and_the_host_telemetry_time():
    view = FleetView()
    add_host(view, "h1", io_limit=1000.0)
    add_vm(view, "a1", "h1")
    add_vm(view, "a2", "h1")
    add_state(
        view,
        "a1",
        "h1",
        io_ops_per_s=300.0,
        load_jobs_per_s=2.0,
        busy_fraction=0.5,
        last_telemetry_at=NOW - 2,
    )
    add_state(view, "a2", "h1", io_ops_per_s=100.0, last_telemetry_at=NOW - 1)
    snapshot = view.snapshot(NOW, CONFIG)
    host = snapshot.host("h1")
    assert host.last_telemetry_at == NOW - 1  # the newest of its VMs' samples
    assert host.measured_io_ops_per_s == 400.0
    a1 = snapshot.vm("a1")
    assert (a1.load_jobs_per_s, a1.outstanding_jobs, a1.busy_fraction) == (2.0, 0, 0.5)
    assert snapshot.taken_at == NOW


# --- migration --------------------------------------------------------------------------------


def test_a_migrated_vm_counts_on_its_new_host_only():
    view = FleetView()
    add_host(view, "h1", io_limit=1000.0)
    add_host(view, "h2", io_limit=1000.0)
    add_vm(view, "a1", "h1")
    add_state(view, "a1", "h1", io_ops_per_s=600.0, last_telemetry_at=NOW)
    assert view.snapshot(NOW, CONFIG).host("h1").measured_io_ops_per_s == 600.0

    add_vm(view, "a1", "h2")  # re-registered by h2's Dom0 after the migration
    snapshot = view.snapshot(NOW, CONFIG)
    assert snapshot_hosts(view) == {"h1": [], "h2": ["a1"]}
    assert snapshot.vm("a1").host_id == "h2"
    assert snapshot.host("h1").measured_io_ops_per_s == 0.0
    assert snapshot.host("h2").measured_io_ops_per_s == 600.0


def test_telemetry_from_the_old_host_does_not_make_the_new_host_fresh():
    view = FleetView()
    add_host(view, "h1")
    add_host(view, "h2")
    add_vm(view, "a1", "h1")
    add_state(view, "a1", "h1", last_telemetry_at=NOW)
    add_vm(view, "a1", "h2")
    snapshot = view.snapshot(NOW, CONFIG)
    assert snapshot.host("h2").last_telemetry_at is None
    assert snapshot.host("h1").last_telemetry_at is None  # a1 no longer runs there

    add_state(view, "a1", "h2", last_telemetry_at=NOW + 1)  # h2's Dom0 sampled it
    assert view.snapshot(NOW + 1, CONFIG).host("h2").last_telemetry_at == NOW + 1


# --- bad records ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "value", "field"),
    [
        ("hosts", {"host_id": "h1", "registered_at": NOW, "io_limit_ops_per_s": -1}, "io_limit"),
        (
            "vms",
            {"vm_id": "a1", "host_id": "h1", "queue_topic": "q", "registered_at": NOW},
            "job_type",
        ),
        ("vm-state", {"vm_id": "a1", "updated_at": NOW, "busy_fraction": 2.0}, "busy_fraction"),
        (
            "limits",
            {
                "scope": "host",
                "target_id": "h1",
                "field": "io_limit_ops_per_s",
                "source": "operator",
                "value": 0,
                "set_at": NOW,
            },
            "value",
        ),
        ("limits", {"scope": "rack", "target_id": "r1"}, "scope"),
    ],
)
def test_a_bad_record_raises_event_error_naming_the_field_and_changes_nothing(topic, value, field):
    view = FleetView()
    add_host(view, "h1")
    before = (view.version, dict(view.hosts), dict(view.vms), dict(view.limits))
    with pytest.raises(EventError, match=field):
        view.apply(topic, b"k", json.dumps(value).encode())
    assert (view.version, dict(view.hosts), dict(view.vms), dict(view.limits)) == before


def test_a_record_that_is_not_json_raises_event_error():
    view = FleetView()
    with pytest.raises(EventError, match="HostRegistration: not JSON"):
        view.apply("hosts", b"h1", b"\xff{")


def test_an_unknown_topic_is_refused():
    view = FleetView()
    with pytest.raises(EventError, match="not a fleet topic: jobs"):
        view.apply("jobs", b"k", b"{}")


# --- the per-VM view cache ------------------------------------------------------------------


def test_a_vms_view_is_reused_until_its_registration_state_or_a_limit_changes():
    view = FleetView()
    add_host(view, "h1", io_limit=1000.0)
    add_vm(view, "a1", "h1")
    add_vm(view, "b1", "h1")
    add_state(view, "a1", "h1", io_per_job=40.0, load_jobs_per_s=1.0)
    first = view.snapshot(NOW, CONFIG)
    again = view.snapshot(NOW, CONFIG)
    assert again.vm("a1") is first.vm("a1")  # nothing changed: the same view

    add_state(view, "a1", "h1", io_per_job=40.0, load_jobs_per_s=3.0)  # a new state
    assert view.snapshot(NOW, CONFIG).vm("a1").load_jobs_per_s == 3.0
    assert view.snapshot(NOW, CONFIG).vm("b1") is first.vm("b1")  # b1 untouched

    view.put_load(DispatchLoad(partition=5, in_flight={"a1": 4}, at=NOW))  # another's load
    assert view.snapshot(NOW, CONFIG).vm("a1").outstanding_jobs == 4

    set_limit(view, LimitScope.VM, "a1", LimitSource.OPERATOR, 70.0)  # a limit
    assert view.snapshot(NOW, CONFIG).vm("a1").io_per_job == 70.0
    limit_tombstone = limit_setting(LimitScope.VM, "a1", LimitSource.OPERATOR, 70.0).key()
    view.apply("limits", limit_tombstone, None)
    assert view.snapshot(NOW, CONFIG).vm("a1").io_per_job == 40.0

    add_vm(view, "a1", "h1", job_type="cpu")  # a new registration
    assert view.snapshot(NOW, CONFIG).vm("a1").job_type == "cpu"
    view.apply("vms", b"a1", None)  # gone, and forgotten
    assert "a1" not in view._vm_views


def test_other_dispatchers_in_flight_jobs_count_but_the_owned_partitions_do_not():
    view = FleetView()
    add_host(view, "h1", io_limit=1000.0)
    add_vm(view, "a1", "h1")
    view.put_load(DispatchLoad(partition=0, in_flight={"a1": 2}, at=NOW))
    view.put_load(DispatchLoad(partition=1, in_flight={"a1": 3, "gone": 1}, at=NOW))
    assert view.snapshot(NOW, CONFIG).vm("a1").outstanding_jobs == 5
    view.own_partitions({1})  # this worker counts partition 1's jobs itself, exactly
    assert view.snapshot(NOW, CONFIG).vm("a1").outstanding_jobs == 2
    view.apply("dispatch-load", b"0", None)  # a tombstone
    assert view.snapshot(NOW, CONFIG).vm("a1").outstanding_jobs == 0


def test_a_cordoned_or_draining_host_takes_no_jobs_but_stays_in_view():
    view = FleetView()
    add_host(view, "h1", io_limit=1000.0)
    add_vm(view, "a1", "h1")
    admin = HostAdmin(host_id="h1", mode=HostMode.CORDONED, reason="disk swap", set_at=NOW)
    view.apply("host-admin", admin.key(), admin.to_bytes())
    snapshot = view.snapshot(NOW, CONFIG)
    assert snapshot.candidates("io") == ()
    assert snapshot.host("h1").accepts_jobs is False
    assert view.host_mode("h1") == admin
    back = HostAdmin(host_id="h1", mode=HostMode.ACTIVE, set_at=NOW + 1)
    view.apply("host-admin", back.key(), back.to_bytes())
    assert [vm.vm_id for vm in view.snapshot(NOW, CONFIG).candidates("io")] == ["a1"]
