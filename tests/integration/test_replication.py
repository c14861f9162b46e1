"""Replication on a three-node KRaft cluster (`vmlb broker start --nodes 3`'s LocalCluster).

1. With VMLB_REPLICATION_FACTOR=3 and VMLB_MIN_INSYNC_REPLICAS=2, every topic the project
   creates has 3 replicas and `min.insync.replicas` 2, read back through the admin API: the
   topics of `vmlb topics apply`, the worker's changelog and Faust's leader topic (`vmlb worker`),
   and the queue topics the Dom0s and guests of an emulated host create.
2. More replicas than brokers is refused, naming the topics, and nothing is created; with
   `--allow-fewer-replicas` the topics get one replica per broker.
3. A broker SIGKILLed while jobs flow loses none (`vmlb bench chaos --scenario
   replicated-broker-kill`, counted from the topics; the harness starts its own three nodes).

The cluster is heavy (three JVMs): test 3 runs first, on its own; 1 and 2 share one cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.ports import free_port_run
from pipeline.ops.worker_process import WorkerProcess
from pipeline.settings import KafkaSettings
from pipeline.topics import load_topics

REPO = Path(__file__).resolve().parents[2]
NODES = 3
VMS = ("r1", "r2")


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMLB_")}
    return {**env, **extra}


@pytest.mark.timeout(900)
def test_a_broker_killed_while_jobs_flow_loses_no_job(tmp_path):
    jobs = 150
    command = [
        sys.executable, "-m", "pipeline.cli.main", "bench", "chaos",
        "--scenario", "replicated-broker-kill", "--jobs", str(jobs), "--rate", "10",
        "--seed", "5", "--json", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    run = subprocess.run(
        command,
        env=_clean_env({}),
        capture_output=True,
        text=True,
        timeout=870,
        cwd=tmp_path,
    )
    output = run.stdout.strip().splitlines()
    assert output, run.stderr[-5000:]
    (result,) = json.loads(output[-1])["runs"]
    detail = json.dumps({k: v for k, v in result.items() if k != "faults"}, indent=1)
    assert run.returncode == 0, detail + run.stderr[-3000:]
    faults = result["faults"]
    assert faults and all(f["kind"] == "broker-kill" for f in faults), faults
    assert result["submitted"] == jobs, detail
    assert result["lost"] == 0 and result["completed"] == jobs, detail
    assert result["stranded"] == 0 and result["ran_on_two_vms"] == 0, detail
    assert result["queued_without_decision"] == 0, detail


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        Path(tmp_path_factory.mktemp("kafka3")), port=free_port_run(2 * NODES), nodes=NODES
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def replication_of(kafka: KafkaSettings, names: list[str]) -> dict[str, tuple[int, str | None]]:
    """Per topic, as the cluster has it: the fewest replicas of any partition, and the topic's
    `min.insync.replicas`."""
    admin = KafkaAdminClient(client_id="test-replication", **kafka.to_kafka_python())
    try:
        # Brokers learn of a new topic from the metadata log a little after it is created.
        deadline = time.monotonic() + 60
        while True:
            described = {t["name"]: t for t in admin.describe_topics(names)}
            if all(described.get(n, {}).get("partitions") for n in names):
                break
            assert time.monotonic() < deadline, f"not described: {names}"
            time.sleep(0.2)
        replies = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        configs = replies.get("topic", {}) if isinstance(replies, dict) else {}
        return {
            name: (
                min(len(p["replica_nodes"]) for p in described[name]["partitions"]),
                str(configs.get(name, {}).get("min.insync.replicas", {}).get("value")),
            )
            for name in names
        }
    finally:
        admin.close()


def listed(kafka: KafkaSettings, *prefixes: str) -> list[str]:
    admin = KafkaAdminClient(client_id="test-replication", **kafka.to_kafka_python())
    try:
        return sorted(t for t in admin.list_topics() if t.startswith(prefixes))
    finally:
        admin.close()


def vmlb(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        env=_clean_env(env),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.mark.timeout(600)
def test_every_topic_the_project_creates_is_replicated_as_set(cluster, tmp_path):
    kafka = KafkaSettings(
        broker=cluster.bootstrap,
        topic_prefix=f"r{uuid.uuid4().hex[:8]}.",
        replication_factor=3,
        min_insync_replicas=2,
    )
    app_id = f"repl-{uuid.uuid4().hex[:6]}"
    env = kafka.child_environment({})
    applied = vmlb("topics", "apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr

    worker = WorkerProcess(kafka, app_id, tmp_path / "worker", loglevel="warning")
    host_args = ["host", "--id", "rh1", "--io-capacity", "2000", "--io-limit", "1500"]
    host_args += ["--state-dir", str(tmp_path / "host")]
    for vm_id in VMS:
        host_args += ["--vm", f"{vm_id}:mixed"]
    host = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", *host_args],
        env=_clean_env(env),
        cwd=REPO,
        stdout=open(tmp_path / "host.log", "wb"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        topics = load_topics(prefix=kafka.topic_prefix)
        queues = {topics.queue_topic(vm_id).name for vm_id in VMS}
        internal = {f"{app_id}-vm_stats-changelog", f"{app_id}-__assignor-__leader"}
        wanted = {spec.name for spec in topics.all_specs()} | queues | internal
        deadline = time.monotonic() + 240
        while not wanted <= set(listed(kafka, kafka.topic_prefix, app_id)):
            worker.check_alive()
            assert host.poll() is None, (tmp_path / "host.log").read_text()[-3000:]
            assert time.monotonic() < deadline, sorted(
                wanted - set(listed(kafka, kafka.topic_prefix, app_id))
            )
            time.sleep(0.5)
        # The worker is up once its fleet view has caught up: by then Faust has declared its own
        # topics, so any it made on its own would be listed below too.
        worker.wait_ready(timeout_s=180)
        names = listed(kafka, kafka.topic_prefix, app_id)
        replication = replication_of(kafka, names)
        wrong = {name: got for name, got in replication.items() if got != (3, "2")}
        assert not wrong, f"not at 3 replicas / min.insync.replicas 2: {wrong}"
        assert wanted <= set(replication)
    finally:
        host.terminate()
        try:
            host.wait(timeout=30)
        except subprocess.TimeoutExpired:
            host.kill()
        worker.stop()


@pytest.mark.timeout(300)
def test_more_replicas_than_brokers_is_refused_unless_fewer_are_allowed(cluster):
    kafka = KafkaSettings(
        broker=cluster.bootstrap,
        topic_prefix=f"f{uuid.uuid4().hex[:8]}.",
        replication_factor=NODES + 1,
        min_insync_replicas=NODES + 1,
    )
    env = kafka.child_environment({})
    refused = vmlb("topics", "apply", env=env)
    assert refused.returncode != 0
    message = " ".join((refused.stdout + refused.stderr).split())
    assert f"the cluster has {NODES} broker(s)" in message, message
    assert "--allow-fewer-replicas" in message and f"{kafka.topic_prefix}jobs (4)" in message
    assert "Traceback" not in message
    assert listed(kafka, kafka.topic_prefix) == []  # refused before anything was created

    allowed = vmlb("topics", "apply", "--allow-fewer-replicas", env=env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    names = [spec.name for spec in load_topics(prefix=kafka.topic_prefix).all_specs()]
    deadline = time.monotonic() + 60
    while not set(names) <= set(listed(kafka, kafka.topic_prefix)):  # metadata propagates
        assert time.monotonic() < deadline, listed(kafka, kafka.topic_prefix)
        time.sleep(0.2)
    replication = replication_of(kafka, names)
    assert set(replication.values()) == {(NODES, str(NODES))}
