"""SnapshotSource: caching, pacing by cost, and claims (ClaimBook), on a fake clock."""

import pytest

from pipeline.events import DispatchLoad, VmStatus
from pipeline.fleet.snapshots import SnapshotSource
from tests.unit.pipeline.fleet_builders import CONFIG, NOW, add_state, add_vm, fleet_of_one

# --- SnapshotSource: caching ------------------------------------------------------------------


def test_snapshot_is_reused_while_the_view_is_unchanged_until_max_age():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=1.0, max_age_s=10.0)
    first = source.get(NOW)
    assert source.get(NOW + 9.9) is first
    rebuilt = source.get(NOW + 10.0)
    assert rebuilt is not first
    assert rebuilt.taken_at == NOW + 10.0


def test_an_expensive_rebuild_spaces_the_next_ones_to_its_share_of_the_time():
    view = fleet_of_one()
    ticks = iter([0.0, 0.02, 5.0, 5.02])  # each rebuild "takes" 20 ms
    source = SnapshotSource(
        view,
        CONFIG,
        min_rebuild_s=0.05,
        max_age_s=10.0,
        rebuild_share=0.1,
        timer=lambda: next(ticks),
    )
    first = source.get(NOW)
    assert source.rebuild_cost_s == pytest.approx(0.02)
    assert source.min_interval_s() == pytest.approx(0.2)  # 20 ms is 10 % of 200 ms
    add_state(view, "a1", "h1", io_ops_per_s=700.0, io_per_job=100.0)
    assert source.get(NOW + 0.1) is first  # changed, but 0.1 s < 0.2 s
    assert source.get(NOW + 0.2) is not first


def test_snapshot_is_rebuilt_on_a_view_change_but_not_sooner_than_min_rebuild():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=1.0, max_age_s=10.0)
    first = source.get(NOW)
    add_state(view, "a1", "h1", io_ops_per_s=700.0, io_per_job=100.0)
    cached = source.get(NOW + 0.9)
    assert cached is first
    assert cached.host("h1").measured_io_ops_per_s == 100.0
    rebuilt = source.get(NOW + 1.0)
    assert rebuilt is not first
    assert rebuilt.host("h1").measured_io_ops_per_s == 700.0
    assert source.get(NOW + 1.5) is rebuilt  # built from the current version: nothing new


# --- SnapshotSource: this dispatcher's jobs in flight -------------------------------------------


def test_own_jobs_in_flight_are_claimed_on_every_rebuilt_snapshot():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.placed("a1")
    source.placed("a1")
    snapshot = source.get(NOW + 0.2)
    assert snapshot.claims("a1") == 2
    assert snapshot.outstanding(snapshot.vm("a1")) == 2
    assert source.get(NOW + 0.3).claims("a1") == 2  # and again on the next rebuild
    assert source.in_flight.total() == 2


def test_an_end_is_released_on_the_cached_snapshot_at_once():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=1.0, max_age_s=10.0)
    cached = source.get(NOW)
    for _ in range(3):  # as the policy and the dispatcher do for a burst
        cached.claim("a1")
        source.placed("a1")
    source.released("a1")
    assert source.get(NOW + 0.5) is cached
    assert cached.outstanding(cached.vm("a1")) == 2
    assert source.build(NOW + 0.5).outstanding(cached.vm("a1")) == 2  # as a rebuild counts


def test_other_dispatchers_jobs_add_to_this_ones():
    view = fleet_of_one()
    view.put_load(DispatchLoad(partition=3, in_flight={"a1": 4}, at=NOW))
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.placed("a1")
    snapshot = source.get(NOW)
    assert snapshot.outstanding(snapshot.vm("a1")) == 5


def test_jobs_on_a_vm_that_left_are_not_claimed_and_do_not_break_the_snapshot():
    view = fleet_of_one()
    add_vm(view, "a2", "h1")
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.placed("a1")
    source.placed("a2")
    add_vm(view, "a1", "h1", status=VmStatus.STOPPED)
    snapshot = source.get(NOW + 0.1)
    assert snapshot.claims("a2") == 1
    source.released("a1")  # its job is moved elsewhere: releasing a VM not in view is harmless
    assert source.in_flight.count("a1") == 0


def test_the_web_views_snapshot_leaves_the_dispatchers_cache_and_pacing_alone():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=1.0, max_age_s=10.0)
    first = source.get(NOW)
    cost = source.rebuild_cost_s
    add_state(view, "a1", "h1", io_ops_per_s=700.0, io_per_job=100.0)
    shown = source.build(NOW + 0.1)
    assert shown.host("h1").measured_io_ops_per_s == 700.0
    assert source.get(NOW + 0.2) is first  # still the cached one: not rebuilt by the view
    assert source.rebuild_cost_s == cost


def test_an_end_is_recorded_when_heard_of_on_the_cached_and_the_rebuilt_snapshots():
    # Dom0's meter is a window behind: the policy must know the VM's job ended, and when.
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=1.0, max_age_s=10.0)
    source.placed("a1")
    cached = source.get(NOW)
    assert cached.last_job_ended_at(cached.vm("a1")) is None
    source.get(NOW + 0.5)  # the dispatcher's time moves on with the snapshots it asks for
    source.released("a1")
    assert cached.last_job_ended_at(cached.vm("a1")) == NOW + 0.5
    source.released("a1", at=NOW + 0.7)  # told the time: that time
    assert source.build(NOW + 1.0).last_job_ended_at(cached.vm("a1")) == NOW + 0.7
    # Forgotten once no meter window can reach it: older than meter window + lag limit.
    reach_s = CONFIG.meter_window_s + CONFIG.lag_limit_s
    assert source.build(NOW + 0.7 + reach_s - 0.1).last_job_ended_at(cached.vm("a1")) is not None
    assert source.build(NOW + 0.7 + reach_s + 0.1).last_job_ended_at(cached.vm("a1")) is None
