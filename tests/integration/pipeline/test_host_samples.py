"""A Dom0 publishing HostSamples, against the real broker, real libvirt and a real worker.

The Dom0 (`producers.telemetry.dom0`) reads libvirt's test driver, whose domains' counters grow
steadily with time, and publishes one HostSample per io-samples partition of its VMs per tick.
The worker must then show the host in `/hosts` with the load those records say: the sum of
its VMs' I/O rates.
"""

from __future__ import annotations

import threading

import pytest

from pipeline.events import DeadLetter, HostSample, IoSample
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from producers.telemetry.dom0 import Dom0
from producers.telemetry.libvirt_source import LibvirtSource
from producers.telemetry.sampler import SamplerConfig
from tests.integration.pipeline.conftest import read_topic, wait_for
from tests.integration.pipeline.test_dispatch import FAST, hosts_by_id
from tests.integration.producers.kafka_reading import TopicReader
from tests.integration.producers.libvirt_world import NODE_URI

#: Every domain of the test node gets a type, so each is registered (an untyped VM is metered
#: but not registered, and the stats agent refuses samples of unregistered VMs).
TYPES = {"batch1": "mixed", "netonly1": "net"}
VMS = {"web1", "batch1", "nodev1", "netonly1"}


def test_a_dom0_publishing_host_samples_makes_its_host_visible_with_its_load(
    kafka_settings: KafkaSettings, topics: Topics, start_worker
) -> None:
    worker = start_worker(**FAST)
    dom0 = Dom0(
        kafka_settings,
        topics,
        SamplerConfig("node1", interval_s=0.5, io_limit_ops_per_s=1e9, vm_types=TYPES),
        LibvirtSource(NODE_URI),
    )
    stop = threading.Event()
    thread = threading.Thread(target=dom0.run, args=(stop,))
    thread.start()
    samples = TopicReader(kafka_settings, topics.name("io-samples"), IoSample)
    try:
        # The rate window (5 s) full of samples, and the host shown with every VM.
        samples.wait_for(lambda got: len(got) >= 4 * 14, what="7 s of samples")
        node = wait_for(
            lambda: (
                (h := hosts_by_id(worker).get("node1"))
                and {vm["vm_id"] for vm in h["vms"]} == VMS
                and h
            ),
            what="node1 with its four VMs in /hosts",
        )
        latest = {s.vm_id: s for s in samples.poll()}
    finally:
        stop.set()
        thread.join(timeout=30)
        samples.close()
    assert not thread.is_alive()
    # The load the samples say: each VM's rate (the test driver's counters grow steadily).
    expected = sum(s.io_ops_per_s for s in latest.values())
    assert expected > 0 and latest["nodev1"].io_ops == 0
    assert node["measured_io_ops_per_s"] == pytest.approx(expected, rel=0.25)
    assert node["eligible"] is True and node["limit_ops_per_s"] == 1e9
    # What travelled: HostSamples keyed by the host, fewer records than VM samples.
    records = read_topic(kafka_settings, topics.name("io-samples"))
    hosts = [HostSample.from_bytes(r.value) for r in records]
    assert {r.key for r in records} == {b"node1"} and {h.host_id for h in hosts} == {"node1"}
    assert len(records) < sum(len(h.vms) for h in hosts)
    assert dom0.stats.records == len(records) and dom0.stats.samples == sum(
        len(h.vms) for h in hosts
    )
    letters = [
        DeadLetter.from_bytes(r.value)
        for r in read_topic(kafka_settings, topics.name("dead-letters"))
    ]
    # Only the start-up race may refuse anything: a VM's registration waits for its queue topic,
    # and a sample that outruns it is refused as a VM not registered (either form alike).
    assert all("is not registered" in letter.reason for letter in letters), letters
