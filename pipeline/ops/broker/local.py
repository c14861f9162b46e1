"""Start, stop and inspect a local KRaft Kafka cluster of one or three nodes on loopback.

Each node runs in combined mode (broker and controller) from the jars `install` cached. The
cluster's layout lives in `<data_dir>/cluster.json`; every node has its own directory with its
`server.properties`, log directory, `server.log` and pid. Storage is formatted once and reused,
so topics survive a stop/start.

Ports: node i (0-based) listens for clients on `port + 2*i` and for the controller quorum on
`port + 2*i + 1` (9092/9093 for a single node).

Secured (`secure=True`, `vmlb broker start --secure`; its own default directory and ports, so it
can run beside the plain one): clients authenticate with SASL/SCRAM-SHA-512 and the
StandardAuthorizer refuses whatever no ACL allows (`allow.everyone.if.no.acl.found=false`). The
one super user, `admin`, is the inter-broker principal (SCRAM, its credential created at format
time with `kafka-storage format --add-scram`, so it exists before any node serves) and the
controller quorum's (SASL/PLAIN from the nodes' own JAAS config: SCRAM credentials live in the
metadata log the controllers are the source of). Its password is generated at first start and
kept in `<data_dir>/admin.env` (0600), read back with `--credentials`. Everything listens on
loopback only. Other principals come from `vmlb acl provision`.
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

from pydantic import SecretStr

from pipeline.errors import BrokerError
from pipeline.ops.broker import install
from pipeline.settings import KafkaSettings, read_credentials_file

DEFAULT_PORT = 9092
#: The secured broker's default first port: clear of a plain cluster of up to three nodes.
DEFAULT_SECURE_PORT = 9192
ADMIN_USER = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_NO_SECURITY = {
    "security_protocol": "PLAINTEXT",
    "sasl_mechanism": None,
    "sasl_username": None,
    "sasl_password": None,
    "ssl_cafile": None,
}
DEFAULT_HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HEAP = "-Xmx512m"


def default_data_dir(secure: bool = False) -> Path:
    plain = Path(
        os.environ.get("VMLB_BROKER_DIR", Path.home() / ".local" / "state" / "vmlb" / "broker")
    )
    return plain.with_name(plain.name + "-secure") if secure else plain


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
    """A KRaft cluster of `nodes` combined-mode nodes under `data_dir`.

    `secure`: None takes what an existing cluster was formatted as (plain for a new one); True
    or False must match it.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        nodes: int = 1,
        secure: bool | None = None,
    ):
        if nodes not in (1, 3):
            raise BrokerError(f"--nodes must be 1 or 3, not {nodes}")
        self.data_dir = Path(data_dir or default_data_dir(bool(secure)))
        layout = self._read_layout()
        if layout is not None:
            # An existing cluster keeps its own port and size: its storage was formatted for them.
            port, nodes = layout["port"], len(layout["nodes"])
            formatted_secure = bool(layout.get("secure", False))
            if secure is not None and secure != formatted_secure:
                raise BrokerError(
                    f"{self.data_dir} holds a {'secured' if formatted_secure else 'plain'} "
                    f"broker; {'--secure needs' if secure else 'a plain broker needs'} another "
                    "--data-dir (or remove this one to start afresh)"
                )
            secure = formatted_secure
        self.secure = bool(secure)
        if port is None:
            port = DEFAULT_SECURE_PORT if self.secure else DEFAULT_PORT
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

    @property
    def admin_credentials_file(self) -> Path:
        """The super user's credentials (secured clusters): pass it as `--credentials`."""
        return self.data_dir / "admin.env"

    def settings(self) -> KafkaSettings:
        """Client settings for this cluster: the super user's when secured."""
        # Given in full, so no VMLB_* variable of the caller's environment can change them.
        if not self.secure:
            return KafkaSettings(broker=self.bootstrap, **_NO_SECURITY)
        given = {**_NO_SECURITY, **read_credentials_file(self.admin_credentials_file)}
        return KafkaSettings(**{**given, "broker": self.bootstrap})

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> str:
        """Start every node that is not running, wait until clients are served; return bootstrap."""
        java = install.require_java()
        install.install()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        cluster_id = self._cluster_id()
        self._write_layout(cluster_id)
        admin_password = self._admin_password() if self.secure else None
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
            self._configure(node, admin_password)
            self._format(java, node, cluster_id, admin_password)
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
            "secure": self.secure,
            "kafka_version": install.KAFKA_VERSION,
            "nodes": [asdict(node) for node in self.nodes],
        }
        self._layout_file().write_text(json.dumps(layout, indent=2) + "\n")

    def _admin_password(self) -> SecretStr:
        """The super user's password: from admin.env, or generated (and written) on first use."""
        from pipeline.ops.security.credentials import new_password, write_credentials_file

        path = self.admin_credentials_file
        if path.exists():
            password = read_credentials_file(path).get("sasl_password")
            if not password:
                raise BrokerError(f"{path} has no VMLB_SASL_PASSWORD")
            return SecretStr(password)
        if any((self._node_dir(n) / "data" / "meta.properties").exists() for n in self.nodes):
            raise BrokerError(
                f"{path} is missing but the storage is formatted: the admin password is lost; "
                f"remove {self.data_dir} to start afresh"
            )
        password = new_password()
        admin = KafkaSettings(
            broker=self.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=SCRAM_MECHANISM,
            sasl_username=ADMIN_USER,
            sasl_password=password,
        )
        write_credentials_file(path, admin, with_prefix=False)
        return password

    def _configure(self, node: Node, admin_password: SecretStr | None = None) -> None:
        directory = self._node_dir(node)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        replicas = len(self.nodes)
        voters = ",".join(f"{n.node_id}@{DEFAULT_HOST}:{n.controller_port}" for n in self.nodes)
        client = "CLIENT" if self.secure else "PLAINTEXT"
        properties: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"{client}://{DEFAULT_HOST}:{node.port},CONTROLLER://{DEFAULT_HOST}:{node.controller_port}",
            "advertised.listeners": f"{client}://{DEFAULT_HOST}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": client,
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        }
        if admin_password is not None:
            properties.update(_security_properties(admin_password))
        properties |= {
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
        # 0600: a secured node's properties hold the admin password (its JAAS configs).
        config = directory / "server.properties"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(text)
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

    def _format(
        self, java: str, node: Node, cluster_id: str, admin_password: SecretStr | None = None
    ) -> None:
        directory = self._node_dir(node)
        if (directory / "data" / "meta.properties").exists():
            return
        arguments = [
            "format",
            # `=`: a cluster id may start with "-", which argparse would take for an option.
            f"--cluster-id={cluster_id}",
            "-c",
            str(directory / "server.properties"),
        ]
        if admin_password is not None:
            # The inter-broker principal's SCRAM credential goes into the bootstrap metadata:
            # the brokers need it before anything could create it. (StorageTool takes it only
            # as an argument; this short-lived process's command line shows it to this
            # machine's root and this user, like the properties file does.)
            secret = admin_password.get_secret_value()
            arguments.append(f"--add-scram={SCRAM_MECHANISM}=[name={ADMIN_USER},password={secret}]")
        command = self._java_command(java, node, "kafka.tools.StorageTool", *arguments)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            if admin_password is not None:
                output = output.replace(admin_password.get_secret_value(), "**********")
            raise BrokerError(f"formatting node {node.node_id} failed:\n{output}")

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
                        request_timeout_ms=5000,
                        client_id="vmlb-ready",
                        **self.settings().to_kafka_python(),
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


def _security_properties(admin_password: SecretStr) -> dict[str, str]:
    """SASL/SCRAM for clients and brokers, SASL/PLAIN for the quorum, the StandardAuthorizer."""
    secret = admin_password.get_secret_value()
    scram = f"listener.name.client.{SCRAM_MECHANISM.lower()}.sasl.jaas.config"
    return {
        "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.client.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        scram: "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN_USER}" password="{secret}";',
        # The quorum's only user: each node logs in with it and accepts it.
        "listener.name.controller.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN_USER}" password="{secret}" user_{ADMIN_USER}="{secret}";'
        ),
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN_USER}",
    }


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
# Refused logins ("Failed authentication with /127.0.0.1 ...") are logged at INFO: keep them.
# Refused operations are `kafka.authorizer.logger`'s, at INFO under `kafka` above.
logger.authentication.name = org.apache.kafka.common.network.Selector
logger.authentication.level = INFO
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
