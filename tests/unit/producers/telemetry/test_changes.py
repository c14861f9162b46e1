"""Detecting VMs that appear, stop, migrate or change job type (producers.telemetry.changes)."""

from __future__ import annotations

from pipeline.events import VmRegistration, VmStatus
from producers.telemetry.changes import ChangeKind, PresenceTracker


def reg(
    vm_id: str, host_id: str, status: VmStatus = VmStatus.RUNNING, job_type: str = "io-heavy"
) -> VmRegistration:
    return VmRegistration(
        vm_id=vm_id, host_id=host_id, job_type=job_type, queue_topic=f"queue.{vm_id}",
        status=status, registered_at=1.0,
    )  # fmt: skip


def kinds(changes: list) -> list[tuple[str, ChangeKind]]:
    return [(c.vm_id, c.kind) for c in changes]


def test_new_vms_start_and_unchanged_ones_say_nothing() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=2.0)
    first = tracker.update({"a": "io-heavy", "b": "cpu-heavy"}, {}, now=0.0)
    assert kinds(first) == [("a", ChangeKind.STARTED), ("b", ChangeKind.STARTED)]
    assert tracker.update({"a": "io-heavy", "b": "cpu-heavy"}, {}, now=1.0) == []


def test_vanished_vm_is_stopped_only_after_the_grace_period() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=2.0)
    tracker.update({"a": "io-heavy"}, {}, now=0.0)
    assert tracker.update({}, {}, now=1.0) == []
    assert tracker.update({}, {}, now=2.9) == []
    assert kinds(tracker.update({}, {}, now=3.0)) == [("a", ChangeKind.STOPPED)]
    assert tracker.update({}, {}, now=4.0) == []  # said once


def test_vm_back_within_the_grace_period_is_not_a_change() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=2.0)
    tracker.update({"a": "io-heavy"}, {}, now=0.0)
    tracker.update({}, {}, now=1.0)
    assert tracker.update({"a": "io-heavy"}, {}, now=1.5) == []
    assert tracker.update({}, {}, now=2.0) == []  # the grace period starts over


def test_vm_registered_running_elsewhere_migrated_in_and_keeps_its_type() -> None:
    tracker = PresenceTracker("h2", stop_grace_s=2.0)
    changes = tracker.update({"a": None}, {"a": reg("a", "h1", job_type="io-heavy")}, now=0.0)
    assert kinds(changes) == [("a", ChangeKind.MIGRATED_IN)]
    assert changes[0].previous_host_id == "h1"
    assert changes[0].job_type == "io-heavy"


def test_vm_stopped_elsewhere_then_started_here_is_a_start() -> None:
    tracker = PresenceTracker("h2", stop_grace_s=2.0)
    changes = tracker.update({"a": "io-heavy"}, {"a": reg("a", "h1", VmStatus.STOPPED)}, now=0.0)
    assert kinds(changes) == [("a", ChangeKind.STARTED)]


def test_vm_gone_and_registered_on_another_host_migrated_out_not_stopped() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=2.0)
    tracker.update({"a": "io-heavy"}, {}, now=0.0)
    tracker.update({}, {}, now=1.0)
    changes = tracker.update({}, {"a": reg("a", "h2")}, now=3.0)
    assert kinds(changes) == [("a", ChangeKind.MIGRATED_OUT)]


def test_job_type_that_changes_or_becomes_known_is_a_retype() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=2.0)
    tracker.update({"a": None}, {}, now=0.0)
    assert kinds(tracker.update({"a": "mixed"}, {}, now=1.0)) == [("a", ChangeKind.RETYPED)]
    assert kinds(tracker.update({"a": "io-heavy"}, {}, now=2.0)) == [("a", ChangeKind.RETYPED)]
    assert tracker.update({"a": None}, {}, now=3.0) == []  # an unknown type does not erase it


def test_type_learned_from_the_fleet_after_the_vm_appeared() -> None:
    tracker = PresenceTracker("h2", stop_grace_s=2.0)
    tracker.update({"a": None}, {}, now=0.0)  # the fleet view had not caught up yet
    changes = tracker.update({"a": None}, {"a": reg("a", "h1", job_type="mixed")}, now=1.0)
    assert [(c.vm_id, c.kind, c.job_type) for c in changes] == [("a", ChangeKind.RETYPED, "mixed")]


def test_pause_and_resume_are_changes_said_once_each() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=2.0)
    tracker.update({"a": "io-heavy"}, {}, now=0.0)
    paused = tracker.update({"a": "io-heavy"}, {}, now=1.0, paused={"a"})
    assert [(c.kind, c.status, c.job_type) for c in paused] == [
        (ChangeKind.PAUSED, VmStatus.PAUSED, "io-heavy")
    ]
    assert tracker.update({"a": "io-heavy"}, {}, now=2.0, paused={"a"}) == []
    resumed = tracker.update({"a": "io-heavy"}, {}, now=3.0)
    assert [(c.kind, c.status) for c in resumed] == [(ChangeKind.RESUMED, VmStatus.RUNNING)]


def test_a_vm_paused_at_the_end_of_its_migration_is_left_to_its_new_host() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=2.0)
    tracker.update({"a": "io-heavy"}, {}, now=0.0)
    # h2 registered it already; the source domain pauses just before it goes away.
    fleet = {"a": reg("a", "h2")}
    assert tracker.update({"a": "io-heavy"}, fleet, now=1.0, paused={"a"}) == []
    assert tracker.update({}, fleet, now=2.0) == []
    assert kinds(tracker.update({}, fleet, now=4.0)) == [("a", ChangeKind.MIGRATED_OUT)]


def test_a_vm_paused_elsewhere_that_appears_here_migrated_in() -> None:
    tracker = PresenceTracker("h2", stop_grace_s=2.0)
    changes = tracker.update({"a": None}, {"a": reg("a", "h1", VmStatus.PAUSED)}, now=0.0)
    assert [(c.kind, c.status) for c in changes] == [(ChangeKind.MIGRATED_IN, VmStatus.RUNNING)]


def test_a_paused_vm_that_stops_is_stopped() -> None:
    tracker = PresenceTracker("h1", stop_grace_s=0.0)
    tracker.update({"a": "io-heavy"}, {}, now=0.0, paused={"a"})
    assert [(c.kind, c.status) for c in tracker.update({}, {}, now=1.0)] == [
        (ChangeKind.STOPPED, VmStatus.STOPPED)
    ]
