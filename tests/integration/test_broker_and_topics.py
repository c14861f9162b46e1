"""The foundation against a real broker: topics as code, a round trip, the broker's lifecycle."""

import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from rich.console import Console

from pipeline.events import JobSubmission
from pipeline.ops.broker.local import LocalCluster, _alive
from pipeline.ops.demo.run import demo_broker
from pipeline.ops.ports import free_port_run
from pipeline.topics import Action, apply_topics, load_topics


def test_apply_creates_every_topic_then_changes_nothing(kafka_settings):
    declared = load_topics(prefix=kafka_settings.topic_prefix)
    dry = apply_topics(kafka_settings, declared.all_specs(), dry_run=True)
    assert {r.action for r in dry} == {Action.WOULD_CREATE}

    first = apply_topics(kafka_settings, declared.all_specs())
    assert {r.name for r in first if r.action is Action.CREATED} == {
        kafka_settings.topic_prefix + name for name in declared.specs
    }
    second = apply_topics(kafka_settings, declared.all_specs())
    assert {r.action for r in second} == {Action.UNCHANGED}


def test_drift_is_reported_not_changed(kafka_settings):
    declared = load_topics(prefix=kafka_settings.topic_prefix)
    jobs = declared.name("jobs")
    admin = KafkaAdminClient(**kafka_settings.to_kafka_python())
    try:
        admin.create_topics([NewTopic(jobs, 2, 1, topic_configs={"retention.ms": "1000"})])
    finally:
        admin.close()
    reports = {r.name: r for r in apply_topics(kafka_settings, declared.all_specs())}
    assert reports[jobs].action is Action.DRIFT
    assert any("partitions: declared 12, actual 2" in d for d in reports[jobs].details)
    assert any("retention.ms: declared 604800000, actual 1000" in d for d in reports[jobs].details)


def test_a_submission_round_trips_through_the_broker(kafka_settings, topics):
    job = JobSubmission(
        job_id=uuid.uuid4().hex, job_type="io-heavy", payload={"mb": 1}, submitted_at=1.0
    )
    producer = KafkaProducer(**kafka_settings.to_kafka_python())
    producer.send(topics.name("jobs"), key=job.key(), value=job.to_bytes()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topics.name("jobs"),
        auto_offset_reset="earliest",
        group_id=None,
        **kafka_settings.to_kafka_python(),
    )
    received: list[JobSubmission] = []
    deadline = (
        time.monotonic() + 90
    )  # until the message arrives; the deadline only bounds a failure
    try:
        while not received and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                received.extend(JobSubmission.from_bytes(message.value) for message in batch)
    finally:
        consumer.close()
    assert received == [job]


@pytest.mark.skipif(
    shutil.which("kcat") is None and not os.environ.get("CI"), reason="kcat not installed"
)
def test_an_external_client_lists_every_declared_topic(kafka_settings, topics):
    # `apply_topics` returns once the broker lists every created topic with its leaders, so
    # the first listing already has them all (a loaded machine once listed all but one).
    listing = subprocess.run(
        ["kcat", "-b", kafka_settings.broker, "-L", "-J"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = {topic["topic"]: topic for topic in json.loads(listing.stdout)["topics"]}
    declared = {topics.name(name): spec for name, spec in topics.specs.items()}
    assert set(declared) <= set(listed)
    for name, spec in declared.items():
        assert len(listed[name]["partitions"]) == spec.partitions, name


def test_broker_cli_start_status_stop_leaves_no_process(tmp_path, monkeypatch):
    monkeypatch.delenv("VMLB_BROKER", raising=False)
    port = free_port_run(2)
    data_dir = tmp_path / "broker"
    vmlb = [sys.executable, "-m", "pipeline.cli.main", "broker"]

    started = subprocess.run(
        [*vmlb, "start", "--data-dir", data_dir, "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"127.0.0.1:{port}" in started.stdout
    cluster = LocalCluster(data_dir)
    pids = [s.pid for s in cluster.status()]
    try:
        status = subprocess.run(
            [*vmlb, "status", "--data-dir", data_dir], capture_output=True, text=True
        )
        assert status.returncode == 0 and "running" in status.stdout
        again = subprocess.run(
            [*vmlb, "start", "--data-dir", data_dir], capture_output=True, text=True
        )
        assert "already running" in again.stdout
        # `vmlb demo` uses a broker it finds running and leaves it so (one it started, it stops:
        # tests/unit/pipeline/ops/demo/test_run.py).
        with demo_broker(Console(file=io.StringIO()), LocalCluster(data_dir, port=port)) as kafka:
            assert kafka.broker == f"127.0.0.1:{port}"
        assert all(_alive(pid) for pid in pids if pid)
    finally:
        stopped = subprocess.run(
            [*vmlb, "stop", "--data-dir", data_dir], capture_output=True, text=True, timeout=60
        )
    assert stopped.returncode == 0
    assert not any(_alive(pid) for pid in pids)
    status = subprocess.run(
        [*vmlb, "status", "--data-dir", data_dir], capture_output=True, text=True
    )
    assert status.returncode == 1 and "stopped" in status.stdout


def test_a_three_node_cluster_starts_and_stops(tmp_path):
    port = free_port_run(6)
    cluster = LocalCluster(tmp_path / "three", port=port, nodes=3)
    bootstrap = cluster.start()
    pids = [s.pid for s in cluster.status()]
    try:
        assert bootstrap == ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(3))
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            assert len(admin.describe_cluster()["brokers"]) == 3
            admin.create_topics([NewTopic("replicated", 3, 3)])
            # Metadata of a new topic reaches every broker shortly after creation.
            deadline = time.monotonic() + 90
            partitions: list = []
            while not partitions and time.monotonic() < deadline:
                partitions = admin.describe_topics(["replicated"])[0]["partitions"]
                time.sleep(0.2)
            replicas = partitions[0]["replica_nodes"]
            assert sorted(replicas) == [1, 2, 3]
        finally:
            admin.close()
    finally:
        cluster.stop()
    assert not any(_alive(pid) for pid in pids)
