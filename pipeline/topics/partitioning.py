"""Which partition Kafka's default partitioner gives a key: murmur2, as every Kafka client.

Where vmlb must know a keyed record's partition without producing it: a job's status records
(`pipeline.topics.jobs`), and a Dom0's `HostSample`s, each written to the io-samples partition
of its VMs' ids so that a VM's telemetry meets its completions (`producers.telemetry`, checked
by the vm_stats agent).
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for_key(key: str, partitions: int) -> int:
    """The partition (of `partitions`) a record keyed `key` lands in by default."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
