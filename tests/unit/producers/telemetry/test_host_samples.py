"""Grouping one host's tick into HostSamples by their VMs' io-samples partition."""

from __future__ import annotations

from pipeline.events import IoCounters, IoSample
from pipeline.topics.partitioning import partition_for_key
from producers.telemetry.host_samples import host_samples


def sample(vm_id: str, at: float = 1000.0) -> IoSample:
    return IoSample(
        host_id="h1",
        vm_id=vm_id,
        sampled_at=at,
        interval_s=1.0,
        io_ops=len(vm_id),
        counters=IoCounters(block_rd_reqs=len(vm_id)),
    )


def test_each_record_holds_the_vms_of_one_partition_and_goes_there():
    samples = [sample(f"vm-{i}") for i in range(40)]
    records = host_samples(samples, partitions=6)
    assert [p for p, _ in records] == sorted({partition_for_key(s.vm_id, 6) for s in samples})
    for partition, record in records:
        assert {partition_for_key(vm.vm_id, 6) for vm in record.vms} == {partition}
        assert record.key() == b"h1"
    carried = [s for _, record in records for s in record.samples()]
    assert sorted(carried, key=lambda s: s.vm_id) == sorted(samples, key=lambda s: s.vm_id)


def test_a_large_group_is_cut_into_bounded_records():
    samples = [sample(f"vm-{i}") for i in range(25)]
    records = host_samples(samples, partitions=1, max_vms=10)
    assert [(p, len(r.vms)) for p, r in records] == [(0, 10), (0, 10), (0, 5)]


def test_nothing_sampled_is_no_record():
    assert host_samples([], partitions=6) == []
