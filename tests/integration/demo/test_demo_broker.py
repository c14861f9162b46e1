"""The demo's own broker on real Kafka: started when none runs, stopped when the demo ends."""

from __future__ import annotations

import io

from kafka.admin import KafkaAdminClient
from rich.console import Console

from pipeline.ops.broker.local import LocalCluster, _alive
from pipeline.ops.demo.run import demo_broker
from pipeline.ops.ports import free_port_run


def test_the_demo_stops_the_broker_it_started(tmp_path, monkeypatch):
    monkeypatch.delenv("VMLB_BROKER", raising=False)
    cluster = LocalCluster(tmp_path / "broker", port=free_port_run(2))
    assert not cluster.is_running()
    with demo_broker(Console(file=io.StringIO()), cluster) as kafka:
        pids = [node.pid for node in cluster.status()]
        admin = KafkaAdminClient(**kafka.to_kafka_python())
        try:
            assert len(admin.describe_cluster()["brokers"]) == 1
        finally:
            admin.close()
    assert pids and not any(_alive(pid) for pid in pids)
    assert not cluster.is_running()
