"""One host's samples of one tick as `HostSample` records: grouped by their VMs' partition.

A VM's telemetry must reach the io-samples partition its `vm_id` keys (where its completions
go, and its row lives), so a host's VMs are grouped by that partition: one record per group,
each at most `MAX_HOST_SAMPLE_VMS` VMs, written explicitly to its partition. A host with more
VMs than io-samples has partitions thus publishes at most one record per partition per tick
(6 by default) instead of one per VM. Pure: no Kafka.
"""

from __future__ import annotations

from collections import defaultdict

from pipeline.events import MAX_HOST_SAMPLE_VMS, HostSample, IoSample
from pipeline.topics.partitioning import partition_for_key


def host_samples(
    samples: list[IoSample], partitions: int, max_vms: int = MAX_HOST_SAMPLE_VMS
) -> list[tuple[int, HostSample]]:
    """(partition, record) for every group of `samples` (one host's, one tick's), in order of
    partition; a group larger than `max_vms` is cut into several records."""
    groups: dict[tuple[int, str, float], list[IoSample]] = defaultdict(list)
    for sample in samples:
        owner = partition_for_key(sample.vm_id, partitions)
        groups[(owner, sample.host_id, sample.sampled_at)].append(sample)
    records = []
    for (partition, _, _), group in sorted(groups.items()):
        for start in range(0, len(group), max_vms):
            records.append((partition, HostSample.of(group[start : start + max_vms])))
    return records
