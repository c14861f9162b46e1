"""`vmlb broker start` says how to use the cluster it started, replication included."""

from types import SimpleNamespace

from pipeline.cli.broker import _print_usage
from pipeline.cli.common import console


def usage(nodes: int) -> str:
    cluster = SimpleNamespace(nodes=list(range(nodes)), secure=False, bootstrap="127.0.0.1:9092")
    with console.capture() as captured:
        _print_usage(cluster)  # type: ignore[arg-type]
    return " ".join(captured.get().split())


def test_a_three_node_cluster_comes_with_its_replication_settings():
    assert "export VMLB_REPLICATION_FACTOR=3 VMLB_MIN_INSYNC_REPLICAS=2" in usage(3)
    assert "REPLICATION" not in usage(1)
