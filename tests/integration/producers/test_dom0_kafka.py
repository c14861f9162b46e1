"""`vmlb dom0` against the real broker: telemetry, registrations, queue topics, fleet changes,
and riding out an unreachable broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import libvirt

from pipeline.events import (
    HostRegistration,
    HostSample,
    HostStatus,
    IoSample,
    VmRegistration,
    VmStatus,
)
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from pipeline.topics.partitioning import partition_for_key
from producers.telemetry.dom0 import Dom0
from producers.telemetry.libvirt_source import LibvirtSource
from producers.telemetry.sampler import SamplerConfig
from tests.integration.producers.kafka_reading import TopicReader, existing_topics
from tests.integration.producers.libvirt_world import NODE_URI, domain_xml

REPO = Path(__file__).resolve().parents[3]


def latest(registrations: list[VmRegistration]) -> dict[str, VmRegistration]:
    return {r.vm_id: r for r in registrations}


def test_dom0_command_publishes_samples_registrations_and_creates_queues(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    command = [
        sys.executable, "-m", "pipeline.cli.main", "dom0",
        "--broker", kafka_settings.broker, "--topic-prefix", kafka_settings.topic_prefix,
        "--host-id", "node1", "--source", f"libvirt:{NODE_URI}", "--interval", "300ms",
        "--io-limit", "5000", "--vm-type", "batch1=mixed",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO)
    samples = TopicReader(kafka_settings, topics.name("io-samples"), IoSample)
    vms = TopicReader(kafka_settings, topics.name("vms"), VmRegistration)
    hosts = TopicReader(kafka_settings, topics.name("hosts"), HostRegistration)
    try:
        every_vm = {"web1", "batch1", "nodev1", "netonly1"}
        got = samples.wait_for(
            lambda ev: {s.vm_id for s in ev} >= every_vm and len(ev) >= 8, what="a sample per VM"
        )
        assert all(s.host_id == "node1" and s.io_ops >= 0 and s.interval_s > 0 for s in got)
        assert {s.vm_id for s in got if s.io_ops == 0} == {"nodev1"}
        # One HostSample per tick and partition of the host's VMs, keyed by the host, each in
        # its VMs' partition (where their completions go).
        for raw_key, raw in samples.raw:
            record = HostSample.from_bytes(raw)
            assert raw_key == b"node1" == record.host_id.encode()
        partitions = topics.partitions("io-samples")
        owners = {partition_for_key(vm, partitions) for vm in every_vm}
        assert samples.partitions_seen() == owners
        assert len(samples.raw) < len(got)  # fewer records than samples
        registered = latest(vms.wait_for(lambda ev: len(latest(ev)) == 3, what="three VMs"))
        assert {vm: r.job_type for vm, r in registered.items()} == {
            "web1": "io-heavy", "batch1": "mixed", "nodev1": "cpu-heavy",
        }  # fmt: skip
        assert all(r.queue_topic == topics.queue_topic(r.vm_id).name for r in registered.values())
        assert {topics.queue_topic(vm).name for vm in registered} <= existing_topics(kafka_settings)
        assert topics.queue_topic("netonly1").name not in existing_topics(kafka_settings)
        up = hosts.wait_for(lambda ev: len(ev) >= 1)[0]
        assert (up.status, up.io_limit_ops_per_s, up.sample_interval_s) == (
            HostStatus.UP,
            5000.0,
            0.3,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    down = hosts.wait_for(lambda ev: ev[-1].status is HostStatus.DOWN, what="host down on exit")
    assert down[-1].host_id == "node1"
    for reader in (samples, vms, hosts):
        reader.close()


def test_dom0_follows_domains_that_appear_stop_and_migrate_in(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    # Another host's Dom0 once registered `mover1` there; it now starts on node1 (a migration).
    from kafka import KafkaProducer

    elsewhere = VmRegistration(
        vm_id="mover1", host_id="node9", job_type="reports",
        queue_topic=topics.queue_topic("mover1").name, registered_at=time.time(),
    )  # fmt: skip
    producer = KafkaProducer(**kafka_settings.to_kafka_python())
    producer.send(topics.name("vms"), elsewhere.to_bytes(), key=elsewhere.key()).get(timeout=10)
    producer.close()

    conn = libvirt.open(NODE_URI)
    config = SamplerConfig("node1", interval_s=0.2, vm_types={"batch1": "mixed"})
    dom0 = Dom0(kafka_settings, topics, config, LibvirtSource(NODE_URI, conn=conn))
    stop = threading.Event()
    thread = threading.Thread(target=dom0.run, args=(stop,))
    thread.start()
    vms = TopicReader(kafka_settings, topics.name("vms"), VmRegistration)
    try:
        vms.wait_for(lambda ev: {"web1", "batch1", "nodev1"} <= set(latest(ev)), what="initial VMs")
        deadline = time.monotonic() + 60
        while "mover1" not in dom0.registry.latest and time.monotonic() < deadline:
            time.sleep(0.1)  # Dom0 reads the fleet's registrations before the VM arrives
        assert "mover1" in dom0.registry.latest
        conn.defineXML(domain_xml("late1", job_type="io-heavy")).create()
        conn.defineXML(domain_xml("mover1")).create()  # no metadata: keeps its fleet type
        conn.lookupByName("web1").destroy()
        now = latest(vms.wait_for(
            lambda ev: latest(ev).get("web1", elsewhere).status is VmStatus.STOPPED
            and latest(ev).get("mover1", elsewhere).host_id == "node1"
            and "late1" in latest(ev),
            what="late1 running, mover1 on node1, web1 stopped",
        ))  # fmt: skip
        assert (now["late1"].status, now["late1"].job_type) == (VmStatus.RUNNING, "io-heavy")
        assert (now["mover1"].status, now["mover1"].job_type) == (VmStatus.RUNNING, "reports")
        assert {
            topics.queue_topic("late1").name,
            topics.queue_topic("mover1").name,
        } <= existing_topics(kafka_settings)
    finally:
        stop.set()
        thread.join(timeout=20)
        vms.close()
        conn.close()
    assert not thread.is_alive()
    assert dom0.dropped == 0


def test_dom0_keeps_sampling_through_an_unreachable_broker_and_then_delivers(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    # Nothing listens on port 1: the broker is "down" from the start. The publisher's address is
    # then pointed at the real broker, as if it came back: what the bound kept is delivered.
    down = kafka_settings.model_copy(update={"broker": "127.0.0.1:1"})
    source = LibvirtSource("test:///default")
    config = SamplerConfig("node-out", interval_s=0.1, vm_types={"test": "io-heavy"})
    dom0 = Dom0(down, topics, config, source, max_buffered=3)
    for _ in range(8):
        dom0.tick()  # must not raise, nor wait for the unreachable broker
    assert dom0.stats.samples == 7  # the first tick is a baseline
    assert dom0.stats.registrations == 0  # held until its queue topic can be created
    assert dom0.dropped == 4  # 7 samples, room for 3: the 4 oldest were dropped, and counted
    # ... and the host's registration, re-sent once the first read said its telemetry path
    # (a compacted registration: kept, never dropped).
    assert len(dom0.publisher.outbox) == 4
    dom0.publisher.settings = kafka_settings
    dom0.publisher.retry_now()
    dom0.publisher.pump()
    samples = TopicReader(kafka_settings, topics.name("io-samples"), IoSample)
    got = samples.wait_for(lambda ev: len(ev) >= 3, what="the buffered samples")
    assert len(got) == 3 and {s.host_id for s in got} == {"node-out"}
    samples.close()
    # The held registration follows once the broker is back and its queue topic exists.
    dom0.settings = kafka_settings
    vms = TopicReader(kafka_settings, topics.name("vms"), VmRegistration)
    deadline = time.monotonic() + 60
    while dom0.stats.registrations == 0 and time.monotonic() < deadline:
        dom0.tick()
        time.sleep(0.1)
    registered = vms.wait_for(lambda ev: len(ev) >= 1, what="the held registration")
    assert [(r.vm_id, r.host_id, r.job_type) for r in registered] == [
        ("test", "node-out", "io-heavy")
    ]
    vms.close()
    dom0.publisher.close()
    source.close()
