"""Hostile input on every topic the worker and a guest read, against the real broker.

Each class of bad message an outside check found (issue #12) is sent to each topic: nesting
deep enough to blow a recursive parser, a value near the broker's size limit, bytes that are
not JSON, non-finite and unbounded numbers, keys that are not the payload's id, timestamps from
the future, HostSamples bad as a whole or in one VM entry (or on another VM's partition), forged
reports (a completion or a status for a job never dispatched to that VM, a
sample claiming another VM's host; a forged status also before the worker starts, read in its
recovery), a registration naming a queue topic that is not its own. Then:
the worker and the guest are still up, a canary job still goes through within seconds, every
refused message has its dead letter (by source topic and offset), and what `/hosts` says of the
VM the garbage claimed to be is finite and unchanged.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaProducer

from pipeline.events import (
    DeadLetter,
    IoCounters,
    IoSample,
    JobCompletion,
    JobState,
    JobStatus,
    JobSubmission,
    StatusWriter,
    VmRegistration,
)
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from pipeline.topics.jobs import latest_status, wait_for_status
from pipeline.topics.partitioning import partition_for_key
from tests.integration.pipeline.conftest import FleetDriver, read_topic, wait_for
from tests.integration.pipeline.test_dispatch import FAST, hosts_by_id

REPO = Path(__file__).resolve().parents[3]
HANDLER = "tests.integration.producers.blocking_handler:run"
NOW = time.time


def deep() -> bytes:
    return b"[" * 10_000 + b"]" * 10_000


def huge() -> bytes:
    return b'{"job_type": "io", "payload": {"x": "' + b"a" * 990_000 + b'"}}'


def sample(vm_id: str, host_id: str, **fields: object) -> dict:
    base = IoSample(
        host_id=host_id, vm_id=vm_id, sampled_at=NOW(), interval_s=1.0, io_ops=10,
        counters=IoCounters(block_rd_reqs=10),
    ).model_dump(mode="json")  # fmt: skip
    return {**base, **fields}


def host_sample(host_id: str, *entries: dict, **fields: object) -> bytes:
    """A HostSample's JSON, its entries as given (each an IoSample's per-VM fields)."""
    return json.dumps(
        {"schema_version": 1, "host_id": host_id, "sampled_at": NOW(), "vms": list(entries)}
        | fields
    ).encode()


def entry(vm_id: str, **fields: object) -> dict:
    base = sample(vm_id, "h1")
    return {k: base[k] for k in ("vm_id", "interval_s", "io_ops", "counters")} | fields


def bad_host_samples(topics: Topics) -> list[tuple[str, bytes | None, bytes, int | None]]:
    """HostSample garbage: (logical topic, key, value, partition: a1's, unless None)."""
    partitions = topics.partitions("io-samples")
    a1 = partition_for_key("a1", partitions)
    ghost = next(
        f"ghost{i}" for i in range(1000) if partition_for_key(f"ghost{i}", partitions) == a1
    )
    deep_vms = b'{"host_id": "h1", "sampled_at": 1.0, "vms": ' + deep() + b"}"
    return [
        ("io-samples", b"h1", host_sample("h1", entry("a1", io_ops=2**64)), a1),
        ("io-samples", b"h1", host_sample("h1", entry("a1", interval_s=0.0)), a1),
        ("io-samples", b"h1", host_sample("h1", entry("a1"), entry("a1")), a1),  # repeated
        ("io-samples", b"h9", host_sample("h9", entry("a1")), a1),  # another host's VM
        ("io-samples", b"h1", host_sample("h1", entry(ghost)), a1),  # unregistered
        ("io-samples", b"h1", host_sample("h1", "not an entry", [1], None), a1),
        (
            "io-samples",
            b"h1",
            host_sample("h1", entry("a1")),
            (a1 + 1) % partitions,
        ),  # not a1's partition
        ("io-samples", b"other", host_sample("h1", entry("a1")), a1),  # key != host_id
        ("io-samples", b"h1", host_sample("h1", entry("a1"), sampled_at=NOW() + 3600), a1),
        ("io-samples", b"h1", host_sample("h1", entry("a1"), sampled_at=1e308), a1),
        ("io-samples", b"h1", host_sample("h1"), a1),  # no VMs
        ("io-samples", b"h1", host_sample("h1", *[entry(f"v{i}") for i in range(1001)]), a1),
        ("io-samples", b"h1", host_sample("no spaces", entry("a1")), a1),
        ("io-samples", b"h1", host_sample("h1", entry("a1"), extra=1), a1),
        ("io-samples", b"h1", host_sample("h1", entry("a1"), vms={"a1": 1}), a1),
        ("io-samples", b"h1", deep_vms, a1),
    ]


def forged_status(job_id: str) -> JobStatus:
    """A guest's `succeeded` for a job never submitted."""
    return JobStatus(
        job_id=job_id,
        state=JobState.SUCCEEDED,
        at=NOW(),
        writer=StatusWriter.GUEST,
        job=JobSubmission(job_id=job_id, job_type="io", submitted_at=NOW()),
        vm_id="a1",
        host_id="h1",
    )


def bad_messages(topics: Topics) -> list[tuple[str, bytes | None, bytes]]:
    """(logical topic or queue topic name, key, value) of every hostile message."""
    generic = [(b"k", deep()), (b"k", huge()), (b"k", b"\xff\xfe not json")]
    out: list[tuple[str, bytes | None, bytes]] = []
    for logical in (
        "jobs", "job-status", "job-control", "io-samples", "completions", "hosts", "vms",
        "vm-state", "limits", "host-admin", "dispatch-load",
    ):  # fmt: skip
        out.extend((logical, key, value) for key, value in generic)
    queue = topics.queue_topic("a1").name
    out.extend((queue, key, value) for key, value in generic)
    now = NOW()
    out += [
        ("jobs", b"x", b'{"job_type": "io", "submitted_at": Infinity}'),
        ("jobs", b"x", b'{"job_type": "io", "max_attempts": "3"}'),
        ("jobs", b"alias", JobSubmission(job_id="real", job_type="io").to_bytes()),
        (
            "jobs",
            b"far",
            JobSubmission(job_id="far", job_type="io", submitted_at=now + 3600).to_bytes(),
        ),
        ("io-samples", b"a1", json.dumps(sample("a1", "h1", io_ops=2**64)).encode()),
        ("io-samples", b"a1", json.dumps(sample("a1", "h1", sampled_at=1e308)).encode()),
        ("io-samples", b"a1", json.dumps(sample("a1", "h1", sampled_at=now + 3600)).encode()),
        ("io-samples", b"a1", json.dumps(sample("a1", "h9")).encode()),  # another host
        ("io-samples", b"ghost", json.dumps(sample("ghost", "h1")).encode()),  # unregistered
        ("io-samples", b"other", json.dumps(sample("a1", "h1")).encode()),  # key != vm_id
        (
            "completions",
            b"a1",
            JobCompletion(
                job_id="j",
                job_type="io",
                vm_id="a1",
                host_id="h9",
                submitted_at=now,
                dispatched_at=now,
                started_at=now,
                finished_at=now,
                outcome="succeeded",
            ).to_bytes(),
        ),
        ("job-status", b"never", forged_status("never").to_bytes()),
        (
            "vms",
            b"a2",
            VmRegistration(
                vm_id="a2",
                host_id="h1",
                job_type="io",
                queue_topic=topics.name("jobs"),
                registered_at=now,
            ).to_bytes(),
        ),
        ("hosts", b"alias", b'{"host_id": "h1", "registered_at": 1.0}'),
        ("vm-state", b"a1", b'{"vm_id": "a1", "io_ops_per_s": 1e308, "updated_at": 1.0}'),
        (
            "limits",
            b"x",
            b'{"scope": "host", "target_id": "h1", "field": "io_limit_ops_per_s",'
            b' "source": "operator", "value": 1e400, "set_at": 1.0}',
        ),
    ]
    return out


def test_hostile_input_on_every_topic_is_dead_lettered_and_nothing_breaks(
    kafka_settings: KafkaSettings, topics: Topics, fleet: FleetDriver, start_worker, tmp_path
):
    fleet.host("h1", io_limit=100_000)
    fleet.vm("a1", "h1", "io")
    fleet.report("a1", 100, jobs_per_s=5)
    fleet.flush()
    early = KafkaProducer(**kafka_settings.to_kafka_python_producer())
    forged = forged_status("before-start")
    metadata = early.send(topics.name("job-status"), key=forged.key(), value=forged.to_bytes()).get(
        30
    )
    early.close()
    sent = [(metadata.topic, metadata.partition, metadata.offset)]  # judged in recovery
    worker = start_worker(**FAST)
    guest = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "guest", "--broker", kafka_settings.broker,
         "--topic-prefix", kafka_settings.topic_prefix, "--vm", "a1", "--host-id", "h1",
         "--handler", HANDLER, "--state-dir", str(tmp_path / "guest")],
        cwd=REPO,
    )  # fmt: skip
    flags = tmp_path / "flags"
    flags.mkdir()
    try:
        wait_for(lambda: hosts_by_id(worker).get("h1", {}).get("vms"), what="a1 in view")
        before = hosts_by_id(worker)["h1"]
        producer = KafkaProducer(
            max_request_size=1_048_576, **kafka_settings.to_kafka_python_producer()
        )
        hostile = [(*message, None) for message in bad_messages(topics)]
        for logical, key, value, partition in [*hostile, *bad_host_samples(topics)]:
            name = logical if "." in logical else topics.name(logical)
            metadata = producer.send(name, key=key, value=value, partition=partition).get(30)
            sent.append((name, metadata.partition, metadata.offset))
        producer.close()

        # A canary still goes through, end to end, within seconds.
        canary = fleet.submit("io", payload={"flag_dir": str(flags)})
        fleet.flush()
        final = wait_for_status(kafka_settings, topics, canary, timeout_s=60)
        assert final is not None and final.state is JobState.SUCCEEDED, final

        worker.check_alive()
        assert guest.poll() is None, "the guest died"

        def dead_lettered() -> set[tuple[str, int | None, int | None]]:
            letters = [
                DeadLetter.from_bytes(r.value)
                for r in read_topic(kafka_settings, topics.name("dead-letters"), timeout_s=30)
            ]
            return {(d.source_topic, d.source_partition, d.source_offset) for d in letters}

        missing = wait_for(
            lambda: not (set(sent) - dead_lettered()),
            timeout_s=90,
            what="a dead letter for every hostile message",
            on_fail=lambda: f"missing: {sorted(set(sent) - dead_lettered())}",
        )
        assert missing
        after = hosts_by_id(worker)["h1"]
        for field in ("total_io_ops_per_s", "measured_io_ops_per_s", "projected_io_ops_per_s"):
            assert math.isfinite(after[field]) and after[field] < 10_000, (field, after[field])
        assert [vm["vm_id"] for vm in after["vms"]] == [vm["vm_id"] for vm in before["vms"]]
        assert "h9" not in hosts_by_id(worker)  # no phantom host from a forged sample
        assert after["limit_ops_per_s"] == before["limit_ops_per_s"]
        # A job never submitted has no status, forged or not (the dispatcher tombstones it).
        for job_id in ("never", "before-start"):
            wait_for(
                lambda job_id=job_id: latest_status(kafka_settings, topics, job_id) is None,
                what=f"no status for {job_id}",
            )
    finally:
        guest.send_signal(signal.SIGTERM)
        guest.wait(timeout=30)
