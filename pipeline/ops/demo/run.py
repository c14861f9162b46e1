"""Run the whole system on one machine: broker, topics, worker, emulated hosts, jobs, live view.

Each run has its own topic prefix and app id (`demo.<run>.`, `vmlb-demo-<run>`), so its counts
start from zero; the topics of earlier demo runs are deleted at start. Logs of every process go
to `.vmlb/demo/<run>/`. Whatever happens (Ctrl-C, an error, the end of `--duration`) every process
the demo started is stopped before it returns: the local Kafka broker too when the demo started it
(a broker it found running, or `VMLB_BROKER`'s cluster, is left as it was).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from pipeline.errors import VmlbError
from pipeline.events import (
    DeadLetter,
    DispatchDecision,
    HostSample,
    IoSample,
    JobCompletion,
    JobSubmission,
    QueuedJob,
)
from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.demo.fleet import (
    FLEET,
    JOB_MIX,
    PAYLOADS,
    fleet_capacity_jobs_per_s,
    offered_rate_per_s,
)
from pipeline.ops.demo.principals import provision_demo, revoke_demo
from pipeline.ops.demo.processes import Children, tail
from pipeline.ops.demo.summary import summarize
from pipeline.ops.ports import free_port, port_free
from pipeline.settings import KafkaSettings, load_kafka_settings
from pipeline.topics import apply_topics, load_topics, topics_of
from pipeline.topics.reader import read_all
from pipeline.worker.queries import hosts_table

DEMO_PREFIX = "demo."
DRAIN_S = 30.0


@dataclass
class DemoOptions:
    duration_s: float | None
    policy: str
    web_port: int = 6066
    live: bool = True
    seed: int = 1
    keep_topics: bool = False
    #: On a secured broker, every part as its own principal (`vmlb acl provision`'s roles).
    secure: bool = False


@dataclass
class Generator:
    """Submits the demo's jobs at the ramping rate, in a thread."""

    kafka: KafkaSettings
    duration_s: float
    capacity_jobs_per_s: float
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    submitted: int = 0
    rate_per_s: float = 0.0
    error: str | None = None

    def run(self) -> None:
        from producers.submit import Submitter

        rng = random.Random(self.seed)
        types = list(JOB_MIX)
        weights = [JOB_MIX[t] for t in types]
        started = time.monotonic()
        next_at = started
        try:
            with Submitter(self.kafka) as submitter:
                while not self.stop.is_set():
                    elapsed = time.monotonic() - started
                    if elapsed >= self.duration_s:
                        break
                    self.rate_per_s = offered_rate_per_s(
                        elapsed, self.duration_s, self.capacity_jobs_per_s
                    )
                    next_at += rng.expovariate(self.rate_per_s)  # Poisson arrivals
                    delay = next_at - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        break
                    job_type = rng.choices(types, weights)[0]
                    submitter.submit(job_type, PAYLOADS[job_type])
                    self.submitted += 1
        except Exception as exc:  # shown in the live view and the summary
            self.error = f"{type(exc).__name__}: {exc}"


def run_demo(options: DemoOptions, console: Console) -> dict[str, Any]:
    with demo_broker(console, secure=options.secure) as kafka:
        return _run_on(kafka, options, console)


def _run_on(kafka: KafkaSettings, options: DemoOptions, console: Console) -> dict[str, Any]:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(".vmlb") / "demo" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    kafka = kafka.model_copy(update={"topic_prefix": f"{DEMO_PREFIX}{run_id.replace('-', '')}."})
    app_id = f"vmlb-demo-{run_id}"
    _forget_earlier_runs(kafka, console, run_id.replace("-", ""))
    declared = load_topics(prefix=kafka.topic_prefix)
    apply_topics(kafka, declared.all_specs())
    console.print(f"topics created under [bold]{kafka.topic_prefix}[/]; logs in {run_dir}/")
    # Each child's credentials file (secured), as VMLB_CREDENTIALS in its environment.
    credentials: dict[str, dict[str, str]] = {}
    submitter_kafka = kafka
    if options.secure:
        credentials, submitter_kafka = provision_demo(kafka, declared, app_id, run_dir, console)

    web_port = options.web_port if port_free(options.web_port) else free_port()
    env = {
        "VMLB_BROKER": kafka.broker,
        "VMLB_TOPIC_PREFIX": kafka.topic_prefix,
        "VMLB_APP_ID": app_id,
        "VMLB_DATA_DIR": str(run_dir / "worker"),
        "VMLB_WEB_PORT": str(web_port),
        "VMLB_POLICY": options.policy,
    }
    url = f"http://127.0.0.1:{web_port}"
    children = Children(run_dir)
    generator: Generator | None = None
    waiting_ids: set[str] = set()
    try:
        children.start(
            "worker", ["worker", "-l", "warning"], {**env, **credentials.get("worker", {})}
        )
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
                str(run_dir / "hosts" / host.host_id),
            ]
            for vm_id, _ in host.vms:
                args += ["--vm", host.vm_flag(vm_id)]
            if options.secure:
                args += ["--credentials-dir", str(run_dir / "credentials")]
            children.start(host.host_id, args, {**env, **credentials.get(host.host_id, {})})
        _wait_for_fleet(url, children, console)
        console.print(f"web view: [bold]{url}/[/]   queries: {url}/hosts  metrics: {url}/metrics")

        capacity = fleet_capacity_jobs_per_s()
        duration_s = options.duration_s or 10 * 365 * 86400.0
        generator = Generator(submitter_kafka, duration_s, capacity, options.seed)
        thread = threading.Thread(target=generator.run, name="job-generator", daemon=True)
        thread.start()
        with contextlib.suppress(KeyboardInterrupt):
            _watch(url, generator, thread, children, options, console)
        generator.stop.set()
        thread.join(timeout=10)
        console.print("stopping the job generator; letting dispatched jobs finish...")
        waiting_ids = _drain(url, kafka, generator.submitted, console)
    finally:
        if generator is not None:
            generator.stop.set()
        console.print("stopping every process the demo started...")
        children.stop_all()
    summary = _summary(kafka, waiting_ids, _channel_rows(run_dir))
    if not options.keep_topics:
        _delete_demo_topics(kafka, console, lambda run: run == run_id.replace("-", ""))
        if options.secure:
            revoke_demo(kafka, app_id)
    summary["policy"] = options.policy
    summary["topic_prefix"] = kafka.topic_prefix
    summary["logs"] = str(run_dir)
    if generator is not None and generator.error:
        summary["generator_error"] = generator.error
    return summary


@contextlib.contextmanager
def demo_broker(
    console: Console, cluster: LocalCluster | None = None, secure: bool = False
) -> Iterator[KafkaSettings]:
    """VMLB_BROKER if set (an existing cluster); else the local broker, started if none runs.

    A broker this started is stopped when the block ends, however it ends; one that was already
    running (someone else's) is left running. Secured, the demo itself is the super user: an
    existing cluster's credentials come from VMLB_CREDENTIALS (or VMLB_SASL_*); the local
    secured broker's from its admin.env.
    """
    if os.environ.get("VMLB_BROKER"):
        kafka = load_kafka_settings()
        if secure and not kafka.secured:
            raise VmlbError(
                "--secure with VMLB_BROKER needs a super user's credentials: "
                "VMLB_CREDENTIALS=<file> (for `vmlb broker start --secure`: its admin.env)"
            )
        yield kafka
        return
    cluster = cluster or LocalCluster(secure=secure or None)
    started = not cluster.is_running()
    if started:
        with console.status(f"starting the local{' secured' if secure else ''} Kafka broker..."):
            cluster.start()
    console.print(f"Kafka at [bold]{cluster.bootstrap}[/]{' (secured)' if secure else ''}")
    try:
        yield cluster.settings()
    finally:
        if started:
            console.print("stopping the local Kafka broker the demo started...")
            cluster.stop()


def _forget_earlier_runs(kafka: KafkaSettings, console: Console, run_id: str) -> None:
    """Delete the topics of demo runs that started over an hour ago (left by a killed demo).

    Younger runs may still be going (two demos on one broker), so they are left alone; a demo
    that ends normally deletes its own topics unless --keep-topics.
    """
    cutoff = time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() - 3600))
    _delete_demo_topics(kafka, console, lambda run: run < cutoff and run != run_id)


def _delete_demo_topics(
    kafka: KafkaSettings, console: Console, which: Callable[[str], bool]
) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(client_id="vmlb-demo", **kafka.to_kafka_python())
    try:
        doomed = []
        for topic in admin.list_topics():
            # demo.<run>.<topic> and Faust's vmlb-demo-<run>-<table>-changelog
            if topic.startswith(DEMO_PREFIX):
                run = topic[len(DEMO_PREFIX) :].split(".", 1)[0]
            elif topic.startswith("vmlb-demo-"):
                run = topic[len("vmlb-demo-") :][:15].replace("-", "")
            else:
                continue
            if which(run):
                doomed.append(topic)
        if doomed:
            admin.delete_topics(doomed, timeout_ms=30000)
            console.print(f"deleted {len(doomed)} demo topics")
    finally:
        admin.close()


def _get(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=3) as answer:
        return json.loads(answer.read())


#: A host has come up once its telemetry reached the worker and is younger than this: the
#: dispatcher's own lag limit (`VMLB_LAG_LIMIT_S`' default), not a stricter one, since on a
#: loaded machine every host's telemetry arrives seconds late alike and is still usable.
FLEET_UP_TELEMETRY_AGE_S = 15.0


def _wait_for_fleet(
    url: str, children: Children, console: Console, timeout_s: float = 300.0
) -> None:
    expected_vms = sum(len(host.vms) for host in FLEET)
    deadline = time.monotonic() + timeout_s
    seen = "the worker did not answer"
    with console.status(
        f"starting the worker and {len(FLEET)} emulated hosts ({expected_vms} guest VMs)..."
    ):
        while time.monotonic() < deadline:
            for child in children.failed():
                raise VmlbError(
                    f"{child.name} exited ({child.process.returncode}):\n{tail(child.log)}"
                )
            with contextlib.suppress(OSError, ValueError):
                hosts = _get(url, "/hosts")["hosts"]
                vms = [vm for host in hosts for vm in host["vms"]]
                up = [
                    h
                    for h in hosts
                    if h["telemetry_age_s"] is not None
                    and h["telemetry_age_s"] < FLEET_UP_TELEMETRY_AGE_S
                ]
                seen = (
                    f"{len(vms)} of {expected_vms} VMs, {len(up)} of {len(FLEET)} hosts reporting"
                )
                if len(vms) == expected_vms and len(up) == len(FLEET):
                    return
            time.sleep(0.5)
    raise VmlbError(
        f"the fleet did not come up in {timeout_s:.0f}s ({seen}); see the logs in "
        f"{children.log_dir}"
    )


def _watch(
    url: str,
    generator: Generator,
    thread: threading.Thread,
    children: Children,
    options: DemoOptions,
    console: Console,
) -> None:
    started = time.monotonic()
    end = started + options.duration_s if options.duration_s else None

    def frame() -> Group:
        status = _get(url, "/status")
        hosts = _get(url, "/hosts")["hosts"]
        elapsed = time.monotonic() - started
        header = Text.from_markup(
            f"[bold]vmlb demo[/] policy [bold]{status['policy']}[/]  {elapsed:5.0f}s"
            f"{f' of {options.duration_s:.0f}s' if options.duration_s else ' (Ctrl-C to stop)'}  "
            f"offered {generator.rate_per_s:5.1f} jobs/s  submitted {generator.submitted}  "
            f"dispatched {status['decisions'].get('dispatched', 0)}  "
            f"[yellow]waiting {status['waiting']}[/]  dead-lettered {status['dead_letters']}"
        )
        return Group(header, hosts_table(hosts), Text(f"web view {url}/", style="dim"))

    if not options.live:
        while (end is None or time.monotonic() < end) and thread.is_alive():
            time.sleep(1.0)
        return
    with Live(frame(), console=console, refresh_per_second=2, transient=False) as live:
        while (end is None or time.monotonic() < end) and thread.is_alive():
            for child in children.failed():
                raise VmlbError(
                    f"{child.name} exited ({child.process.returncode}):\n{tail(child.log)}"
                )
            time.sleep(1.0)
            with contextlib.suppress(OSError, ValueError):
                live.update(frame())


def _drain(url: str, kafka: KafkaSettings, submitted: int, console: Console) -> set[str]:
    """Wait (bounded) until nothing waits and every dispatched job has completed."""
    deadline = time.monotonic() + DRAIN_S
    waiting: set[str] = set()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            waiting = {entry["job_id"] for entry in _get(url, "/waiting")["waiting"]}
            completed = set()
            for record in read_all(kafka, topics_of(kafka).name("completions"), timeout_s=5):
                with contextlib.suppress(VmlbError):
                    completed.add(JobCompletion.from_bytes(record.value).job_id)
            status = _get(url, "/status")
            dispatched = status["decisions"].get("dispatched", 0)
            if not waiting and status.get("lag", 0) == 0 and dispatched <= len(completed):
                break
        time.sleep(1.0)
    return waiting


def _channel_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Every emulated host's channel accounting (`<run dir>/hosts/<host>/channel.jsonl`), each
    host's rows in their order; a torn line (a host killed mid-write) is left out."""
    rows: list[dict[str, Any]] = []
    for host in FLEET:
        path = run_dir / "hosts" / host.host_id / "channel.jsonl"
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    row = json.loads(line)
                    if isinstance(row, dict):
                        rows.append(row)
    return rows


def _summary(
    kafka: KafkaSettings, waiting: set[str], channel: list[dict[str, Any]]
) -> dict[str, Any]:
    def parse(cls: type, topic: str) -> list[Any]:
        items = []
        for record in read_all(
            kafka, topics_of(kafka).name(topic) if "." not in topic else topic, timeout_s=30
        ):
            with contextlib.suppress(VmlbError):
                items.append(cls.from_bytes(record.value))
        return items

    ended_at = time.time()
    jobs = [job for job in parse(JobSubmission, "jobs") if job.job_id]
    submitted = [job.job_id for job in jobs]
    submitted_at = {job.job_id: job.submitted_at for job in jobs if job.job_id and job.submitted_at}
    queued = [
        job.job_id
        for host in FLEET
        for vm_id, _ in host.vms
        for job in parse(QueuedJob, f"{kafka.topic_prefix}queue.{vm_id}")
    ]
    limits = {host.host_id: float(host.io_limit_ops_per_s) for host in FLEET}
    # A job the dispatcher has taken has a status record; one without is still unread.
    taken = {
        record.key.decode(errors="replace")
        for record in read_all(kafka, topics_of(kafka).name("job-status"), timeout_s=30)
        if record.key is not None
    }
    return summarize(
        submitted=submitted,
        completions=parse(JobCompletion, "completions"),
        dead_letters=parse(DeadLetter, "dead-letters"),
        waiting=waiting,
        queued=queued,
        samples=[  # both forms: Dom0 publishes HostSamples (or IoSamples, --per-vm-samples)
            *parse(IoSample, "io-samples"),
            *(s for record in parse(HostSample, "io-samples") for s in record.samples()),
        ],
        limits=limits,
        submitted_at=submitted_at,
        unread=set(submitted) - taken,
        ended_at=ended_at,
        channel=channel,
        decisions=parse(DispatchDecision, "decisions"),
    )
