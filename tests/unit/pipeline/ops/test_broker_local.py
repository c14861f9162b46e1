"""The local broker's parts that need no JVM."""

import subprocess

import pytest

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


def _properties(path):
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line and "=" in line
    )


def test_a_secured_node_authenticates_everyone_and_allows_only_what_acls_say(tmp_path):
    from pydantic import SecretStr

    cluster = LocalCluster(tmp_path, port=19192, secure=True)
    node = cluster.nodes[0]
    cluster._configure(node, SecretStr("pw-123"))
    config = tmp_path / "node-1" / "server.properties"
    properties = _properties(config)
    assert properties["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["super.users"] == "User:admin"
    # No listener without SASL, and none beyond loopback.
    assert properties["listener.security.protocol.map"] == (
        "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert properties["listeners"] == "CLIENT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert 'password="pw-123"' in properties["listener.name.client.scram-sha-512.sasl.jaas.config"]
    assert config.stat().st_mode & 0o077 == 0  # it holds the password


def test_a_secured_format_adds_the_admin_scram_credential_and_hides_it_in_errors(
    tmp_path, monkeypatch
):
    from pydantic import SecretStr

    from pipeline.errors import BrokerError

    seen: list[list[str]] = []

    def failing_run(command, **kwargs):
        seen.append(command)
        return subprocess.CompletedProcess(command, 1, "", f"bad argument {command[-1]}")

    monkeypatch.setattr(subprocess, "run", failing_run)
    cluster = LocalCluster(tmp_path, port=19192, secure=True)
    node = cluster.nodes[0]
    cluster._configure(node, SecretStr("pw-123"))
    with pytest.raises(BrokerError) as failure:
        cluster._format("java", node, "cluster-id", SecretStr("pw-123"))
    assert "--add-scram=SCRAM-SHA-512=[name=admin,password=pw-123]" in seen[0]
    assert "pw-123" not in str(failure.value) and "**********" in str(failure.value)


def test_a_data_dir_keeps_the_security_it_was_formatted_with(tmp_path):
    import json

    from pipeline.errors import BrokerError

    (tmp_path / "cluster.json").write_text(
        json.dumps({"cluster_id": "x", "port": 19192, "secure": True, "nodes": [{}]})
    )
    assert LocalCluster(tmp_path).secure  # stop/status find out by themselves
    with pytest.raises(BrokerError, match="holds a secured broker"):
        LocalCluster(tmp_path, secure=False)


def test_the_secured_broker_has_its_own_default_directory_and_port(monkeypatch, tmp_path):
    monkeypatch.setenv("VMLB_BROKER_DIR", str(tmp_path / "broker"))
    secure = LocalCluster(secure=True)
    assert secure.data_dir == tmp_path / "broker-secure"
    assert secure.port == 9192
    assert LocalCluster().data_dir == tmp_path / "broker" and LocalCluster().port == 9092
