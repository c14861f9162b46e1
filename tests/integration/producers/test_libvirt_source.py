"""The libvirt source against real libvirt: the test driver's default host and a node file with
several domains, including domains defined, destroyed and restarted mid-run."""

from __future__ import annotations

import libvirt

from producers.telemetry.libvirt_source import LibvirtSource
from producers.telemetry.sampler import Sampler, SamplerConfig
from producers.telemetry.source import VmReading
from tests.integration.producers.libvirt_world import NODE_URI, domain_xml


class StepClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def by_vm(readings: list[VmReading]) -> dict[str, VmReading]:
    return {r.vm_id: r for r in readings}


def test_default_host_reads_the_test_domain_per_device() -> None:
    source = LibvirtSource("test:///default")
    try:
        first = by_vm(source.read())
        second = by_vm(source.read())
    finally:
        source.close()
    assert set(first) >= {"test"}
    one, two = first["test"].counters, second["test"].counters
    # One disk and one NIC, whose counters only grow between two readings.
    assert one.block_rd_reqs > 0 and one.net_rx_packets > 0
    assert two.total_ops >= one.total_ops
    assert first["test"].job_type is None  # no vmlb metadata on the default domain


def test_node_file_devices_metadata_and_deltas() -> None:
    conn = libvirt.open(NODE_URI)
    source = LibvirtSource(NODE_URI, conn=conn)
    clock = StepClock()
    sampler = Sampler(
        SamplerConfig("node1", interval_s=1.0, vm_types={"batch1": "mixed"}),
        source,
        queue_topic=lambda vm: f"queue.{vm}",
        clock=clock,
    )
    try:
        readings = by_vm(source.read())
        assert set(readings) == {"web1", "batch1", "nodev1", "netonly1"}
        assert readings["web1"].job_type == "io-heavy"
        assert readings["nodev1"].counters.total_ops == 0  # no disks, no NICs
        assert readings["netonly1"].counters.block_rd_reqs == 0
        assert readings["netonly1"].counters.net_rx_packets > 0
        # Two disks and two NICs count about twice one disk and one NIC.
        assert (
            readings["batch1"].counters.block_rd_reqs
            > 1.5 * readings["web1"].counters.block_rd_reqs
        )

        first = sampler.tick()
        assert sorted((r.vm_id, r.job_type) for r in first.registrations) == [
            ("batch1", "mixed"), ("nodev1", "cpu-heavy"), ("web1", "io-heavy"),
        ]  # fmt: skip
        assert first.untyped == ["netonly1"]
        before = by_vm(source.read())
        clock.now += 1.0
        second = sampler.tick()
        after = by_vm(source.read())
        samples = {s.vm_id: s for s in second.samples}
        assert set(samples) == {"web1", "batch1", "nodev1", "netonly1"}
        for vm_id, sample in samples.items():
            assert sample.io_ops >= 0 and sample.interval_s == 1.0
            # The delta is what libvirt's counters advanced by, between reads around the tick.
            assert sample.counters.total_ops >= before[vm_id].counters.total_ops
            assert sample.counters.total_ops <= after[vm_id].counters.total_ops
        assert samples["nodev1"].io_ops == 0
        assert samples["web1"].io_ops > 0
    finally:
        source.close()
        conn.close()


def test_domains_defined_destroyed_and_restarted_mid_run() -> None:
    conn = libvirt.open(NODE_URI)
    source = LibvirtSource(NODE_URI, conn=conn)
    clock = StepClock()
    sampler = Sampler(
        SamplerConfig("node1", interval_s=1.0, stop_grace_s=0.0),
        source,
        queue_topic=lambda vm: f"queue.{vm}",
        clock=clock,
    )
    try:
        sampler.tick()
        new = conn.defineXML(domain_xml("late1", job_type="io-heavy", disks=2))
        new.create()
        conn.lookupByName("web1").destroy()
        clock.now += 1.0
        changed = sampler.tick()
        assert sorted((r.vm_id, r.status.value) for r in changed.registrations) == [
            ("late1", "running"), ("web1", "stopped"),
        ]  # fmt: skip
        assert "late1" not in {s.vm_id for s in changed.samples}  # first sight: a baseline
        clock.now += 1.0
        assert "late1" in {s.vm_id for s in sampler.tick().samples}

        # A restart between two readings: a new domain id, so the counters started over and
        # the sample is their whole value (never a negative or a stale delta).
        domain = conn.lookupByName("late1")
        domain.destroy()
        domain.create()
        clock.now += 1.0
        resets_before = sampler.resets
        restarted = {s.vm_id: s for s in sampler.tick().samples}["late1"]
        assert sampler.resets == resets_before + 1
        assert restarted.io_ops == restarted.counters.total_ops
    finally:
        source.close()
        conn.close()
