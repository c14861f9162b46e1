"""A guest takes jobs again within seconds of the broker's return (issue #15's goal: 10 s).

Found by `vmlb bench chaos --scenario broker-kill`: after a broker outage of 33-40 s the guests
ran their queued jobs again only 17-44 s after the broker served again, some not before the
drain ended (jobs dispatched to them counted lost). kafka-python's clients back off reconnects
exponentially up to `reconnect_backoff_max_ms`, 30 s by default, so a client that kept trying
through an outage waits up to 30 s more once the broker is back.

This test has a broker of its own (it kills it): a single node on free ports.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pipeline.events import JobState, JobStatus, QueuedJob
from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.ports import free_port_run
from pipeline.settings import KafkaSettings
from pipeline.topics import apply_topics, load_topics
from pipeline.topics.reader import read_all

REPO = Path(__file__).resolve().parents[3]
OUTAGE_S = 35.0
BACK_WITHIN_S = 10.0


def queued(job_id: str, vm_id: str) -> QueuedJob:
    now = time.time()
    return QueuedJob(
        job_id=job_id, job_type="mixed", payload={"io_ops": 2, "cpu_ms": 1}, vm_id=vm_id,
        host_id="h1", submitted_at=now, dispatched_at=now, policy="test", status_partition=0,
    )  # fmt: skip


def ended_at(kafka: KafkaSettings, topic: str, job_id: str) -> float | None:
    """When the broker appended the job's end (the test's topic keeps append times)."""
    for record in read_all(kafka, topic, timeout_s=10):
        if (
            record.key == job_id.encode()
            and record.value
            and JobStatus.from_bytes(record.value).state is JobState.SUCCEEDED
        ):
            return record.timestamp / 1000.0
    return None


def wait_ended(kafka: KafkaSettings, topic: str, job_id: str, timeout_s: float) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at = ended_at(kafka, topic, job_id)
        if at is not None:
            return at
        time.sleep(0.5)
    return None


@pytest.mark.timeout(600)
def test_a_guest_runs_jobs_again_within_seconds_of_the_brokers_return(tmp_path):
    cluster = LocalCluster(tmp_path / "kafka", port=free_port_run(2))
    kafka = KafkaSettings(broker=cluster.start(), topic_prefix=f"o{uuid.uuid4().hex[:8]}.")
    topics = load_topics(prefix=kafka.topic_prefix)
    vm_id = "g1"
    specs = [
        spec.model_copy(
            update={"config": {**spec.config, "message.timestamp.type": "LogAppendTime"}}
        )
        if spec.name == topics.name("job-status")
        else spec
        for spec in [*topics.all_specs(), topics.queue_topic(vm_id)]
    ]
    apply_topics(kafka, specs)
    status_topic = topics.name("job-status")
    command = [
        sys.executable, "-m", "pipeline.cli.main", "guest", "--broker", kafka.broker,
        "--topic-prefix", kafka.topic_prefix, "--vm", vm_id, "--host-id", "h1",
        "--handler", "mixed", "--state-dir", str(tmp_path / "guest"),
    ]  # fmt: skip
    guest = subprocess.Popen(command, cwd=REPO)
    try:
        producer = KafkaProducer(**kafka.to_kafka_python_producer())
        before = queued("before", vm_id)
        producer.send(topics.queue_topic(vm_id).name, before.to_bytes(), key=before.key()).get(30)
        producer.close()
        assert wait_ended(kafka, status_topic, "before", 120) is not None, "the guest never ran"

        cluster.stop_node(1, kill=True)
        time.sleep(OUTAGE_S)  # the guest's clients retry all along
        cluster.start()
        back_at = time.time()

        producer = KafkaProducer(**kafka.to_kafka_python_producer())
        after = queued("after", vm_id)
        producer.send(topics.queue_topic(vm_id).name, after.to_bytes(), key=after.key()).get(30)
        producer.close()
        ended = wait_ended(kafka, status_topic, "after", 90)
        assert ended is not None, "the guest never ran a job again after the outage"
        assert ended - back_at <= BACK_WITHIN_S, f"ran {ended - back_at:.1f} s after the return"
        assert guest.poll() is None
    finally:
        guest.terminate()
        try:
            guest.wait(timeout=30)
        except subprocess.TimeoutExpired:
            guest.kill()
        cluster.stop()
