"""Start, stop and inspect a local KRaft Kafka cluster of one or three nodes on loopback.

Each node runs in combined mode (broker and controller) from the jars `install` cached. The
cluster's layout lives in `<data_dir>/cluster.json`; every node has its own directory with its
`server.properties`, log directory, `server.log` and pid. Storage is formatted once and reused,
so topics survive a stop/start.

Ports: node i (0-based) listens for clients on `port + 2*i` and for the controller quorum on
`port + 2*i + 1` (9092/9093 for a single node).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import BrokerError
from pipeline.ops.broker import install

DEFAULT_PORT = 9092
DEFAULT_HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HEAP = "-Xmx512m"


def default_data_dir() -> Path:
    return Path(
        os.environ.get("VMLB_BROKER_DIR", Path.home() / ".local" / "state" / "vmlb" / "broker")
    )


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"{DEFAULT_HOST}:{self.port}"


@dataclass(frozen=True)
class NodeStatus:
    node: Node
    pid: int | None
    running: bool


class LocalCluster:
    """A KRaft cluster of `nodes` combined-mode nodes under `data_dir`."""

    def __init__(self, data_dir: Path | None = None, port: int = DEFAULT_PORT, nodes: int = 1):
        if nodes not in (1, 3):
            raise BrokerError(f"--nodes must be 1 or 3, not {nodes}")
        self.data_dir = Path(data_dir or default_data_dir())
        layout = self._read_layout()
        if layout is not None:
            # An existing cluster keeps its own port and size: its storage was formatted for them.
            port, nodes = layout["port"], len(layout["nodes"])
        self.port = port
        self.nodes = [Node(i + 1, port + 2 * i, port + 2 * i + 1) for i in range(nodes)]

    # --- queries -------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def status(self) -> list[NodeStatus]:
        result = []
        for node in self.nodes:
            pid = self._read_pid(node)
            result.append(NodeStatus(node, pid, pid is not None and _alive(pid)))
        return result

    def is_running(self) -> bool:
        return all(s.running for s in self.status())

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> str:
        """Start every node that is not running, wait until clients are served; return bootstrap."""
        java = install.require_java()
        install.install()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = self._cluster_id()
        self._write_layout(cluster_id)
        for status in self.status():
            if status.running:
                continue
            node = status.node
            for port in (node.port, node.controller_port):
                if _port_open(port):
                    raise BrokerError(
                        f"port {port} is already in use by another program; "
                        f"choose another with --port (or stop what listens there)"
                    )
            self._configure(node)
            self._format(java, node, cluster_id)
            self._launch(java, node)
        self._wait_ready(ready_timeout_s)
        return self.bootstrap

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
        """Stop every node (SIGTERM, then SIGKILL after `timeout_s`); return the pids stopped.

        All nodes get SIGTERM at once: stopped one by one, the last controllers of a cluster
        lose their quorum and wait out their shutdown timeouts.
        """
        running = [s for s in self.status() if s.pid is not None and s.running]
        _terminate_all([s.pid for s in running if s.pid is not None], timeout_s)
        for status in self.status():
            self._pid_file(status.node).unlink(missing_ok=True)
        return [s.pid for s in running if s.pid is not None]

    def stop_node(
        self, node_id: int, *, kill: bool = False, timeout_s: float = STOP_TIMEOUT_S
    ) -> int | None:
        """Stop one node: SIGTERM (a clean shutdown; SIGKILL past `timeout_s`), or with `kill`
        SIGKILL at once, as a crash would. Return its pid (None if it was not running).

        `start()` brings it back on its storage. For fault injection (`vmlb bench chaos`)."""
        node = next((n for n in self.nodes if n.node_id == node_id), None)
        if node is None:
            raise BrokerError(f"no node {node_id} in this cluster (nodes 1..{len(self.nodes)})")
        pid = self._read_pid(node)
        if pid is None or not _alive(pid):
            return None
        if kill:
            _signal(pid, signal.SIGKILL)
            _wait_gone([pid], 10.0)
        else:
            _terminate_all([pid], timeout_s)
        self._pid_file(node).unlink(missing_ok=True)
        return pid

    # --- internals -----------------------------------------------------------------------------

    def _node_dir(self, node: Node) -> Path:
        return self.data_dir / f"node-{node.node_id}"

    def _pid_file(self, node: Node) -> Path:
        return self._node_dir(node) / "kafka.pid"

    def log_file(self, node: Node) -> Path:
        return self._node_dir(node) / "server.log"

    def _read_pid(self, node: Node) -> int | None:
        try:
            return int(self._pid_file(node).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _layout_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def _read_layout(self) -> dict | None:
        try:
            return json.loads(self._layout_file().read_text())
        except FileNotFoundError:
            return None

    def _cluster_id(self) -> str:
        layout = self._read_layout()
        if layout is not None:
            return layout["cluster_id"]
        return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

    def _write_layout(self, cluster_id: str) -> None:
        layout = {
            "cluster_id": cluster_id,
            "port": self.port,
            "kafka_version": install.KAFKA_VERSION,
            "nodes": [asdict(node) for node in self.nodes],
        }
        self._layout_file().write_text(json.dumps(layout, indent=2) + "\n")

    def _configure(self, node: Node) -> None:
        directory = self._node_dir(node)
        directory.mkdir(parents=True, exist_ok=True)
        replicas = len(self.nodes)
        voters = ",".join(f"{n.node_id}@{DEFAULT_HOST}:{n.controller_port}" for n in self.nodes)
        properties = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{DEFAULT_HOST}:{node.port},CONTROLLER://{DEFAULT_HOST}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{DEFAULT_HOST}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": directory / "data",
            "num.partitions": 1,
            # Topics come from topics.yaml; a typo must fail, not create a stray topic.
            "auto.create.topics.enable": "false",
            "offsets.topic.num.partitions": 10,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": 1,
            # Local use: a consumer group forms at once instead of after 3 s.
            "group.initial.rebalance.delay.ms": 0,
            "log.cleaner.backoff.ms": 5000,
        }
        text = "".join(f"{key}={value}\n" for key, value in properties.items())
        (directory / "server.properties").write_text(text)
        (directory / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file(node)))

    def _java_command(self, java: str, node: Node, main: str, *args: str) -> list[str]:
        directory = self._node_dir(node)
        return [
            java,
            HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
            "-cp",
            install.classpath(),
            main,
            *args,
        ]

    def _format(self, java: str, node: Node, cluster_id: str) -> None:
        directory = self._node_dir(node)
        if (directory / "data" / "meta.properties").exists():
            return
        command = self._java_command(
            java,
            node,
            "kafka.tools.StorageTool",
            "format",
            # `=`: a cluster id may start with "-", which argparse would take for an option.
            f"--cluster-id={cluster_id}",
            "-c",
            str(directory / "server.properties"),
        )
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(
                f"formatting node {node.node_id} failed:\n{result.stdout}{result.stderr}"
            )

    def _launch(self, java: str, node: Node) -> None:
        directory = self._node_dir(node)
        command = self._java_command(
            java, node, "kafka.Kafka", str(directory / "server.properties")
        )
        with open(directory / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the caller's terminal must not kill the broker
            )
        self._pid_file(node).write_text(f"{process.pid}\n")

    def _wait_ready(self, timeout_s: float) -> None:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for status in self.status():
                if not status.running:
                    raise BrokerError(
                        f"Kafka node {status.node.node_id} exited during start-up; "
                        f"last lines of {self.log_file(status.node)}:\n{_tail(self.log_file(status.node))}"
                    )
            if all(_port_open(node.port) for node in self.nodes):
                try:
                    admin = KafkaAdminClient(
                        bootstrap_servers=self.bootstrap,
                        request_timeout_ms=5000,
                        client_id="vmlb-ready",
                    )
                    try:
                        if len(admin.describe_cluster()["brokers"]) == len(self.nodes):
                            return
                    finally:
                        admin.close()
                except KafkaError as exc:
                    last_error = exc
            time.sleep(0.5)
        raise BrokerError(
            f"Kafka did not accept clients within {timeout_s:.0f}s (last error: {last_error})"
        )


_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _terminate_all(pids: list[int], timeout_s: float) -> None:
    """SIGTERM every pid, wait up to `timeout_s` for all, SIGKILL the rest and wait for them."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    if not _wait_gone(pids, timeout_s):
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        _wait_gone(pids, 10.0)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.2)
    return not any(_alive(pid) for pid in pids)


def _port_open(port: int, host: str = DEFAULT_HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
