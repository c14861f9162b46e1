"""SnapshotSource: caching, pacing by cost, and claims (ClaimBook), on a fake clock."""

import pytest

from pipeline.events import VmStatus
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


# --- SnapshotSource: claims -------------------------------------------------------------------


def test_claims_are_reapplied_to_a_rebuilt_snapshot():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    source.record_claim("a1", NOW + 0.1)
    snapshot = source.get(NOW + 0.2)
    assert snapshot.claims("a1") == 2
    assert snapshot.outstanding(snapshot.vm("a1")) == 2
    assert source.get(NOW + 0.3).claims("a1") == 2  # and again on the next rebuild
    assert source.pending_claims() == 2


def test_claims_are_dropped_once_the_vm_state_covers_them():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    source.record_claim("a1", NOW + 0.5)
    # vm_stats counted the first placement (its outstanding count includes it), not the second.
    add_state(view, "a1", "h1", io_per_job=100.0, outstanding_jobs=1, last_decision_at=NOW)
    snapshot = source.get(NOW + 1.0)
    assert snapshot.claims("a1") == 1
    assert snapshot.outstanding(snapshot.vm("a1")) == 2
    add_state(view, "a1", "h1", io_per_job=100.0, outstanding_jobs=2, last_decision_at=NOW + 0.5)
    snapshot = source.get(NOW + 1.1)
    assert snapshot.claims("a1") == 0
    assert snapshot.outstanding(snapshot.vm("a1")) == 2
    assert source.pending_claims() == 0


def test_a_state_of_another_vm_does_not_cover_a_claim():
    view = fleet_of_one()
    add_vm(view, "a2", "h1")
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    add_state(view, "a2", "h1", last_decision_at=NOW + 5)
    assert source.get(NOW + 1).claims("a1") == 1


def test_claims_older_than_four_stale_periods_are_dropped():
    view = fleet_of_one()
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    assert source.get(NOW + 11.9).claims("a1") == 1  # 4 x stale_after_s = 12 s
    assert source.get(NOW + 12.0).claims("a1") == 0
    assert source.pending_claims() == 0


@pytest.mark.parametrize("how", ["tombstone", "stopped"])
def test_claims_on_a_vm_that_left_are_dropped(how):
    view = fleet_of_one()
    add_vm(view, "a2", "h1")
    source = SnapshotSource(view, CONFIG, min_rebuild_s=0.0, max_age_s=0.0)
    source.record_claim("a1", NOW)
    source.record_claim("a2", NOW)
    if how == "tombstone":
        view.apply("vms", b"a1", None)
    else:
        add_vm(view, "a1", "h1", status=VmStatus.STOPPED)
    snapshot = source.get(NOW + 0.1)
    assert snapshot.claims("a2") == 1
    assert source.pending_claims() == 1
    add_vm(view, "a1", "h1")  # back again: the old claim must not come back with it
    assert source.get(NOW + 0.2).claims("a1") == 0
