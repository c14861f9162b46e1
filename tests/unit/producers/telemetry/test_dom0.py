"""The Dom0 publisher's telemetry (producers.telemetry.dom0): what one tick puts in its outbox.

No broker: the publisher's outbox is read instead of sent (`pump` is a no-op), and the fleet
registry reads nothing.
"""

from __future__ import annotations

from pipeline.events import HostSample, IoSample, read_io_samples
from pipeline.settings import KafkaSettings
from pipeline.topics import load_topics
from pipeline.topics.partitioning import partition_for_key
from producers.telemetry.dom0 import Dom0
from producers.telemetry.sampler import SamplerConfig
from tests.unit.producers.telemetry.test_sampler import Clock, FakeSource

VMS = [f"vm-{i}" for i in range(12)]


def dom0(**options: object) -> tuple[Dom0, FakeSource, Clock]:
    source, clock = FakeSource(), Clock()
    for vm in VMS:
        source.set(vm, 0, job_type="io")
    topics = load_topics(prefix="t.")
    runner = Dom0(
        KafkaSettings(broker="127.0.0.1:1", topic_prefix="t."),
        topics,
        SamplerConfig("h1", interval_s=1.0),
        source,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )
    runner.publisher.pump = lambda: 0  # type: ignore[method-assign]
    runner.registry.poll = lambda: {}  # type: ignore[method-assign]
    return runner, source, clock


def second_tick(runner: Dom0, source: FakeSource, clock: Clock) -> list:
    runner.tick()  # a baseline: no sample yet
    for i, vm in enumerate(VMS):
        source.set(vm, 10 * i, job_type="io")
    clock.now += 1.0
    runner.tick()
    return [m for m in runner.publisher.outbox.take() if m.topic == "t.io-samples"]


def test_dom0_publishes_one_host_sample_per_partition_of_its_vms():
    runner, source, clock = dom0()
    sent = second_tick(runner, source, clock)
    partitions = {partition_for_key(vm, 6) for vm in VMS}
    assert sorted(m.partition for m in sent) == sorted(partitions)
    assert len(sent) < len(VMS)
    samples = []
    for message in sent:
        record = HostSample.from_bytes(message.value)
        assert message.key == b"h1"
        assert {partition_for_key(vm.vm_id, 6) for vm in record.vms} == {message.partition}
        samples += read_io_samples(message.value)
    assert {s.vm_id: s.io_ops for s in samples} == {vm: 10 * i for i, vm in enumerate(VMS)}
    assert {(s.host_id, s.sampled_at, s.interval_s) for s in samples} == {("h1", clock.now, 1.0)}
    assert (runner.stats.samples, runner.stats.records) == (len(VMS), len(sent))


def test_dom0_can_still_publish_one_io_sample_per_vm():
    runner, source, clock = dom0(per_vm_samples=True)
    sent = second_tick(runner, source, clock)
    samples = [IoSample.from_bytes(m.value) for m in sent]
    assert sorted(s.vm_id for s in samples) == sorted(VMS)
    assert all(
        m.key == s.vm_id.encode() and m.partition is None
        for m, s in zip(sent, samples, strict=True)
    )
    assert (runner.stats.samples, runner.stats.records) == (len(VMS), len(VMS))
