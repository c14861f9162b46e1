"""The local broker's parts that need no JVM."""

import subprocess

from pipeline.ops.broker.local import LocalCluster


def test_a_cluster_id_starting_with_a_dash_is_passed_as_one_argument(tmp_path, monkeypatch):
    # Base64 cluster ids may start with "-"; `-t <id>` made argparse read it as an option.
    seen: list[list[str]] = []

    def fake_run(command, **kwargs):
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    cluster = LocalCluster(tmp_path, port=19092)
    node = cluster.nodes[0]
    cluster._configure(node)
    cluster._format("java", node, "-AbCdEfGhIjKlMnOpQrStU")
    assert "--cluster-id=-AbCdEfGhIjKlMnOpQrStU" in seen[0]


def test_ports_of_a_three_node_cluster(tmp_path):
    cluster = LocalCluster(tmp_path, port=20000, nodes=3)
    assert [(n.port, n.controller_port) for n in cluster.nodes] == [
        (20000, 20001),
        (20002, 20003),
        (20004, 20005),
    ]
    assert cluster.bootstrap == "127.0.0.1:20000,127.0.0.1:20002,127.0.0.1:20004"
