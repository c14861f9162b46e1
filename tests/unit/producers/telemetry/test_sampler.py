"""The pure sampling loop with an in-memory source and an injected clock."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.events import HostStatus, IoCounters, VmRegistration, VmStatus
from producers.errors import SourceError
from producers.telemetry.sampler import Sampler, SamplerConfig
from producers.telemetry.source import VmReading


class FakeSource:
    description = "fake"

    def __init__(self) -> None:
        self.vms: dict[str, VmReading] = {}
        self.fail = False
        self.path: str | None = "bulk"

    def set(
        self,
        vm_id: str,
        rd: int | None,
        job_type: str | None = None,
        incarnation: str = "1",
        status: VmStatus | None = VmStatus.RUNNING,
    ) -> None:
        counters = None if rd is None else IoCounters(block_rd_reqs=rd)
        self.vms[vm_id] = VmReading(vm_id, counters, job_type, incarnation, status)

    def read(self) -> list[VmReading]:
        if self.fail:
            raise SourceError("fake: hypervisor unreachable")
        return list(self.vms.values())

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(vm_types: dict[str, str] | None = None) -> tuple[Sampler, FakeSource, Clock]:
    source, clock = FakeSource(), Clock()
    config = SamplerConfig("h1", interval_s=1.0, io_limit_ops_per_s=500.0, vm_types=vm_types or {})
    return (
        Sampler(config, source, queue_topic=lambda vm: f"p.queue.{vm}", clock=clock),
        source,
        clock,
    )


def test_samples_are_deltas_over_the_measured_interval() -> None:
    sampler, source, clock = make()
    source.set("a", 100, "io-heavy")
    first = sampler.tick()
    assert first.samples == []  # baseline
    assert [(r.vm_id, r.job_type, r.queue_topic, r.status) for r in first.registrations] == [
        ("a", "io-heavy", "p.queue.a", VmStatus.RUNNING)
    ]
    clock.now += 2.0
    source.set("a", 340, "io-heavy")
    second = sampler.tick()
    assert [(s.vm_id, s.io_ops, s.interval_s, s.host_id) for s in second.samples] == [
        ("a", 240, 2.0, "h1")
    ]
    assert second.samples[0].io_ops_per_s == 120.0
    assert second.registrations == []


def test_host_registration_carries_limit_and_interval() -> None:
    sampler, _, _ = make()
    host = sampler.host_registration()
    assert (host.host_id, host.io_limit_ops_per_s, host.sample_interval_s, host.status) == (
        "h1", 500.0, 1.0, HostStatus.UP,
    )  # fmt: skip


def test_operator_mapping_wins_over_the_source() -> None:
    sampler, source, _ = make({"a": "cpu-heavy"})
    source.set("a", 1, "io-heavy")
    assert [r.job_type for r in sampler.tick().registrations] == ["cpu-heavy"]


def test_vm_without_job_type_is_metered_but_not_registered() -> None:
    sampler, source, clock = make()
    source.set("x", 1)
    first = sampler.tick()
    assert (first.registrations, first.untyped) == ([], ["x"])
    clock.now += 1
    source.set("x", 11)
    assert [s.io_ops for s in sampler.tick().samples] == [10]


def test_migrated_in_vm_is_registered_here_with_its_fleet_type() -> None:
    sampler, source, _ = make()
    source.set("m", 5)  # no type known locally
    fleet = {
        "m": VmRegistration(
            vm_id="m", host_id="h9", job_type="mixed", queue_topic="p.queue.m", registered_at=1.0
        )
    }
    result = sampler.tick(fleet)
    assert [(r.vm_id, r.host_id, r.job_type) for r in result.registrations] == [
        ("m", "h1", "mixed")
    ]


def test_stopped_vm_registered_stopped_after_grace_and_restart_starts_over() -> None:
    sampler, source, clock = make()
    source.set("a", 100, "io-heavy")
    sampler.tick()
    del source.vms["a"]
    for _ in range(2):  # missing for less than the grace period (2 intervals)
        clock.now += 1
        assert sampler.tick().registrations == []
    clock.now += 1
    stopped = sampler.tick().registrations
    assert [(r.vm_id, r.status) for r in stopped] == [("a", VmStatus.STOPPED)]
    clock.now += 1
    source.set("a", 5, "io-heavy", incarnation="2")
    again = sampler.tick()
    assert again.samples == []  # a new baseline, not a delta from the old run
    assert [(r.vm_id, r.status) for r in again.registrations] == [("a", VmStatus.RUNNING)]


def test_restart_between_two_readings_is_a_reset() -> None:
    sampler, source, clock = make()
    source.set("a", 900, "io-heavy", incarnation="1")
    sampler.tick()
    clock.now += 1
    source.set("a", 40, "io-heavy", incarnation="2")
    assert [s.io_ops for s in sampler.tick().samples] == [40]
    assert sampler.resets == 1


def test_unreachable_source_reports_the_error_and_keeps_registrations() -> None:
    sampler, source, clock = make()
    source.set("a", 1, "io-heavy")
    sampler.tick()
    source.fail = True
    for _ in range(5):
        clock.now += 1
        result = sampler.tick()
        assert result.source_error == "fake: hypervisor unreachable"
        assert result.registrations == []  # no VM is declared stopped for lack of data


def test_invalid_vm_names_are_skipped() -> None:
    sampler, source, _ = make()
    source.set("bad name!", 1, "io-heavy")
    source.set("ok", 1, "io-heavy")
    assert [r.vm_id for r in sampler.tick().registrations] == ["ok"]


def test_shutdown_marks_host_down_and_optionally_vms_stopped() -> None:
    sampler, source, _ = make()
    source.set("a", 1, "io-heavy")
    sampler.tick()
    events = sampler.shutdown_registrations(vms_stopped=True)
    assert [type(e).__name__ for e in events] == ["HostRegistration", "VmRegistration"]
    assert events[0].status is HostStatus.DOWN  # type: ignore[attr-defined]
    assert events[1].status is VmStatus.STOPPED  # type: ignore[attr-defined]
    assert len(sampler.shutdown_registrations(vms_stopped=False)) == 1


def test_bad_host_id_is_refused_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--host-id"):
        SamplerConfig("no spaces allowed")


def test_a_reading_without_counters_is_neither_a_restart_nor_a_burst() -> None:
    sampler, source, clock = make()
    source.set("a", 8_000, "io-heavy")  # a long-lived VM
    sampler.tick()
    clock.now += 1
    source.set("a", 8_010, "io-heavy")
    assert [s.io_ops for s in sampler.tick().samples] == [10]
    for _ in range(3):  # `virsh destroy` in progress, or another client holds the job
        clock.now += 1
        source.set("a", None, "io-heavy")
        result = sampler.tick()
        assert (result.samples, result.unmetered, result.registrations) == ([], ["a"], [])
    clock.now += 1
    source.set("a", 8_050, "io-heavy")
    back = sampler.tick().samples
    # The growth since the last full reading, over the whole gap: never 8,050 as one interval.
    assert [(s.io_ops, s.interval_s) for s in back] == [(40, 4.0)]
    assert sampler.resets == 0


def test_a_vm_first_seen_without_counters_gets_its_baseline_later() -> None:
    sampler, source, clock = make()
    source.set("a", None, "io-heavy")
    first = sampler.tick()
    assert first.samples == [] and [r.vm_id for r in first.registrations] == ["a"]
    clock.now += 1
    source.set("a", 500, "io-heavy")
    assert sampler.tick().samples == []  # a baseline, not 500 ops in one interval
    clock.now += 1
    source.set("a", 510, "io-heavy")
    assert [s.io_ops for s in sampler.tick().samples] == [10]


def test_a_paused_vm_is_registered_paused_and_running_again_on_resume() -> None:
    sampler, source, clock = make()
    source.set("a", 100, "io-heavy")
    sampler.tick()
    clock.now += 1
    source.set("a", 100, "io-heavy", status=VmStatus.PAUSED)
    paused = sampler.tick()
    assert [(r.vm_id, r.status) for r in paused.registrations] == [("a", VmStatus.PAUSED)]
    assert [s.io_ops for s in paused.samples] == [0]  # still metered: its host's load is real
    clock.now += 1
    assert sampler.tick().registrations == []  # said once
    clock.now += 1
    source.set("a", 100, "io-heavy", status=None)  # not known this time: no change
    assert sampler.tick().registrations == []
    clock.now += 1
    source.set("a", 120, "io-heavy")
    resumed = sampler.tick()
    assert [(r.vm_id, r.status) for r in resumed.registrations] == [("a", VmStatus.RUNNING)]


def test_a_vm_that_starts_paused_is_registered_paused() -> None:
    sampler, source, _ = make()
    source.set("a", 0, "io-heavy", status=VmStatus.PAUSED)
    assert [r.status for r in sampler.tick().registrations] == [VmStatus.PAUSED]


def test_a_metadata_change_while_paused_keeps_it_paused() -> None:
    sampler, source, clock = make()
    source.set("a", 0, "io-heavy", status=VmStatus.PAUSED)
    sampler.tick()
    clock.now += 1
    source.set("a", 0, "mixed", status=VmStatus.PAUSED)
    assert [(r.job_type, r.status) for r in sampler.tick().registrations] == [
        ("mixed", VmStatus.PAUSED)
    ]


def test_the_read_path_is_in_the_host_registration_and_a_change_re_registers() -> None:
    sampler, source, clock = make()
    source.path = None
    assert sampler.host_registration().telemetry_path is None
    source.path = "bulk"
    source.set("a", 1, "io-heavy")
    first = sampler.tick()
    assert first.host_registration is not None
    assert first.host_registration.telemetry_path == "bulk"
    clock.now += 1
    assert sampler.tick().host_registration is None  # unchanged: not re-registered
    source.path = "bulk-per-domain"
    clock.now += 1
    changed = sampler.tick().host_registration
    assert changed is not None and changed.telemetry_path == "bulk-per-domain"
