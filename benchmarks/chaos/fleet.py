"""The processes of one chaos run: the broker, the run's topics, the hosts, the workers.

- `Brokers`: the harness's own local KRaft clusters (`pipeline.ops.broker.local.LocalCluster`,
  on free ports, in a temporary directory): one single-node cluster shared by every run that
  needs one node, one three-node cluster for the replicated scenario; or an existing cluster
  (`--broker`), for the scenarios that do not fault the broker.
- `ChaosFleet`: one run's topics under a fresh prefix, its emulated hosts (`vmlb host` processes,
  as the demo starts them; each runs its guests and Dom0 as children and restarts them when they
  die), and its `vmlb worker` processes (`pipeline.ops.worker_process.WorkerProcess`).

A run's topics all get the scenario's replication (3 replicas, `min.insync.replicas` 2 on three
nodes) from the run's `KafkaSettings` (VMLB_REPLICATION_FACTOR, VMLB_MIN_INSYNC_REPLICAS, passed
to every process): `topics.yaml`'s topics, each VM's queue topic, the worker's changelog and
Faust's assignor topic, created here first (tests/integration/test_replication.py checks that
every one of them, and every topic the processes create, is replicated so). `io-samples` and
`job-status` use the broker's append time as record timestamps, so the accounting can tell when
a Dom0 or a guest delivered again after an outage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.chaos.scenarios import FLEET, JOB_TYPE, Scenario, vm_ids
from pipeline.errors import VmlbError
from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.demo.processes import Children, tail
from pipeline.ops.ports import free_port_run
from pipeline.ops.worker_process import WorkerProcess
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, TopicSpec, apply_topics, load_topics, worker_topic_specs

#: Topics whose record timestamps are the broker's append time (see the module docstring).
APPEND_TIME_TOPICS = ("io-samples", "job-status")
READY_TIMEOUT_S = 180.0


class Brokers:
    """The clusters of one `vmlb bench chaos` invocation, started on first use."""

    def __init__(self, external: str | None = None) -> None:
        self.external = external
        self._root: Path | None = None
        self._clusters: dict[int, LocalCluster] = {}

    def bootstrap(self, nodes: int) -> str:
        if self.external is not None:
            return self.external
        return self.cluster(nodes).bootstrap

    def cluster(self, nodes: int) -> LocalCluster:
        if self.external is not None:
            raise VmlbError("this scenario faults the broker: it needs the harness's own broker")
        if nodes not in self._clusters:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="vmlb-chaos-"))
            cluster = LocalCluster(
                self._root / f"kafka-{nodes}", port=free_port_run(2 * nodes), nodes=nodes
            )
            self._clusters[nodes] = cluster  # before start: close() must stop a half-started one
            cluster.start()
        cluster = self._clusters[nodes]
        if not cluster.is_running():  # a run that faulted it ended early
            cluster.start()
        return cluster

    def close(self) -> None:
        for cluster in self._clusters.values():
            with contextlib.suppress(Exception):
                cluster.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)


class ChaosFleet:
    def __init__(
        self, kafka: KafkaSettings, scenario: Scenario, run_dir: Path, app_id: str
    ) -> None:
        self.kafka = kafka
        self.scenario = scenario
        self.run_dir = run_dir
        self.app_id = app_id
        self.topics: Topics = load_topics(prefix=kafka.topic_prefix)
        self.children = Children(run_dir)
        self.hosts: dict[str, Any] = {}
        self.workers: list[WorkerProcess] = []
        self.worker_dirs: list[Path] = []
        self.unplanned_exits: list[str] = []
        #: Workers stopped on purpose (scale-down), not to be restarted.
        self.retired: set[int] = set()
        run_dir.mkdir(parents=True, exist_ok=True)

    # --- topics -------------------------------------------------------------------------------

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic of the run (the settings' replication is applied as they are created)."""
        specs = []
        for logical, spec in self.topics.specs.items():
            config = dict(spec.config)
            if logical in APPEND_TIME_TOPICS:
                config["message.timestamp.type"] = "LogAppendTime"
            specs.append(
                spec.model_copy(update={"name": self.topics.name(logical), "config": config})
            )
        specs += [self.topics.queue_topic(vm_id) for vm_id in vm_ids()]
        specs += worker_topic_specs(self.app_id, self.kafka, self.topics)
        return specs

    def create_topics(self) -> None:
        apply_topics(self.kafka, self.topic_specs(), timeout_s=60.0)

    def delete_topics(self) -> None:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(client_id="vmlb-chaos", **self.kafka.to_kafka_python())
        try:
            names = [spec.name for spec in self.topic_specs()]
            present = set(admin.list_topics())
            doomed = [name for name in names if name in present]
            if doomed:
                admin.delete_topics(doomed, timeout_ms=30_000)
        finally:
            admin.close()

    # --- processes ----------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {"VMLB_BROKER": self.kafka.broker, "VMLB_TOPIC_PREFIX": self.kafka.topic_prefix}
        return {**env, **self.kafka.replication_env()}

    def start_hosts(self) -> None:
        for host in FLEET:
            args = [
                "host",
                "--id",
                host.host_id,
                "--io-capacity",
                str(host.io_capacity_ops_per_s),
                "--io-limit",
                str(host.io_limit_ops_per_s),
                "--state-dir",
                str(self.run_dir / "hosts" / host.host_id),
            ]
            for vm_id in host.vm_ids:
                args += ["--vm", f"{vm_id}:{JOB_TYPE}"]
            self.hosts[host.host_id] = self.children.start(host.host_id, args, self._env())

    def start_worker(self) -> WorkerProcess:
        """One more worker of the run's app id, on a data dir of its own."""
        data_dir = self.run_dir / f"worker-{len(self.workers)}"
        self.worker_dirs.append(data_dir)
        self.workers.append(WorkerProcess(self.kafka, self.app_id, data_dir, loglevel="warning"))
        return self.workers[-1]

    def restart_worker(self, index: int) -> WorkerProcess:
        """Worker `index` started again on its data dir (the same static member id)."""
        # The same port too, as a supervisor restarting it with its config would (see
        # WorkerProcess: Faust refuses a static member whose URL changed).
        worker = WorkerProcess(
            self.kafka,
            self.app_id,
            self.worker_dirs[index],
            loglevel="warning",
            port=self.workers[index].port,
        )
        self.workers[index] = worker
        return worker

    def kill_worker(self, index: int, *, empty: bool = False) -> None:
        """SIGKILL worker `index` and start it again at once on the same data dir (emptied
        first with `empty`, its logs kept), as a supervisor restarting a crashed worker would."""
        self.workers[index].kill()
        if empty:
            for entry in self.worker_dirs[index].iterdir():
                if entry.suffix == ".log":
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.restart_worker(index)

    def stop_worker(self, index: int) -> None:
        """SIGTERM worker `index` (a clean scale-down); it is not started again."""
        self.retired.add(index)
        self.workers[index].stop()

    def live_workers(self) -> list[WorkerProcess]:
        return [w for i, w in enumerate(self.workers) if i not in self.retired]

    def supervise(self) -> None:
        """Restart a worker that died without a fault (the report lists it); a host that died
        ends the run (its children would be gone too)."""
        for index, worker in enumerate(self.workers):
            code = worker.process.poll()
            if code is not None and index not in self.retired:
                self.unplanned_exits.append(f"worker {index} exited with {code}")
                self.restart_worker(index)
        for name, child in self.hosts.items():
            if child.process.poll() is not None:
                raise VmlbError(f"host {name} exited:\n{tail(child.log)}")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every worker's fleet view has every host with fresh telemetry and every VM."""
        deadline = time.monotonic() + timeout_s
        expected_vms = len(vm_ids())
        last: Any = None
        while time.monotonic() < deadline:
            for name, child in self.hosts.items():
                if child.process.poll() is not None:
                    raise VmlbError(f"host {name} exited:\n{tail(child.log)}")
            ready = 0
            for worker in self.workers:
                worker.check_alive()
                with contextlib.suppress(OSError, ValueError):
                    status = worker.get("/status")
                    hosts = worker.get("/hosts")["hosts"]
                    vms = [vm for host in hosts for vm in host["vms"]]
                    fresh = [
                        h
                        for h in hosts
                        if h["telemetry_age_s"] is not None and h["telemetry_age_s"] < 5
                    ]
                    last = (status.get("dispatch_ready"), len(vms), len(fresh))
                    if (
                        status.get("fleet_ready")
                        and status.get("dispatch_ready")
                        and len(vms) == expected_vms
                        and len(fresh) == len(FLEET)
                    ):
                        ready += 1
            if ready == len(self.workers):
                return
            time.sleep(1.0)
        logs = "\n".join(w.tail(20) for w in self.workers)
        raise VmlbError(f"the chaos fleet was not ready in {timeout_s:.0f}s ({last}):\n{logs}")

    def guest_pid(self, vm_id: str) -> int | None:
        """The pid of VM `vm_id`'s `vmlb guest` (None while its host restarts it)."""
        for host in FLEET:
            if vm_id in host.vm_ids:
                return _child(self.hosts[host.host_id].process.pid, "guest", "--vm", vm_id)
        return None

    def dom0_pid(self, host_id: str) -> int | None:
        return _child(self.hosts[host_id].process.pid, "dom0", "--host-id", host_id)

    def stop(self) -> None:
        try:
            for worker in self.workers:
                with contextlib.suppress(Exception):
                    worker.stop(timeout_s=20)
        finally:
            self.children.stop_all()


def _child(parent: int, command: str, flag: str, value: str) -> int | None:
    """The child of `parent` running `vmlb <command> ... <flag> <value>`."""
    for pid, argv in children_of(parent):
        if command in argv and flag in argv:
            at = argv.index(flag)
            if at + 1 < len(argv) and argv[at + 1] == value:
                return pid
    return None


def children_of(parent: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of every live process whose parent is `parent`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[1]) != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = [part.decode(errors="replace") for part in cmdline.read().split(b"\0")]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        found.append((int(entry), argv))
    return found


def kill(pid: int) -> bool:
    """SIGKILL `pid`; False if it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
