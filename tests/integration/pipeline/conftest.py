"""Harness for pipeline tests: real `vmlb worker` processes and a fleet driven over Kafka.

`FleetDriver` plays the producers' part with kafka-python (registrations, I/O samples,
completions, submissions), so each test states the fleet it needs in a few lines; the workers
are the real command, started as processes and queried over their HTTP API.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from pipeline.events import (
    HostRegistration,
    IoCounters,
    IoSample,
    JobCompletion,
    JobSubmission,
    LimitField,
    LimitScope,
    LimitSetting,
    LimitSource,
    VmRegistration,
    VmStatus,
)
from pipeline.ops.worker_process import WorkerProcess
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, ensure_topic
from pipeline.topics.reader import read_all

#: A real `vmlb worker` process (see pipeline.ops.worker_process).
Worker = WorkerProcess


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float = 90.0,
    what: str = "condition",
    on_fail: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError:
            last = None
        if last:
            return last
        time.sleep(0.3)
    detail = f"\n{on_fail()}" if on_fail else ""
    raise AssertionError(f"timed out waiting for {what} (last: {last!r}){detail}")


class FleetDriver:
    """Produces what Dom0s, guests and submitters would, for a test's fleet."""

    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self.kafka = kafka
        self.topics = topics
        self.producer = KafkaProducer(acks="all", linger_ms=5, **kafka.to_kafka_python())
        self.vm_hosts: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        #: Completions sent per VM.
        self.completed: dict[str, int] = {}
        self._reporting: dict[str, tuple[float, float, str]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def send(self, logical: str, key: bytes | None, value: bytes | None) -> None:
        self.producer.send(self.topics.name(logical), key=key, value=value)

    def flush(self) -> None:
        self.producer.flush(timeout=30)

    def host(self, host_id: str, io_limit: float | None = None) -> None:
        registration = HostRegistration(
            host_id=host_id, io_limit_ops_per_s=io_limit, registered_at=time.time()
        )
        self.send("hosts", registration.key(), registration.to_bytes())

    def vm(self, vm_id: str, host_id: str, job_type: str) -> str:
        spec = self.topics.queue_topic(vm_id)
        ensure_topic(self.kafka, spec)
        registration = VmRegistration(
            vm_id=vm_id,
            host_id=host_id,
            job_type=job_type,
            queue_topic=spec.name,
            registered_at=time.time(),
        )
        self.send("vms", registration.key(), registration.to_bytes())
        self.vm_hosts[vm_id] = host_id
        return spec.name

    def vm_stopped(self, vm_id: str, job_type: str = "io") -> None:
        """The VM's Dom0 says it stopped (a new registration with status stopped)."""
        registration = VmRegistration(
            vm_id=vm_id,
            host_id=self.vm_hosts[vm_id],
            job_type=job_type,
            queue_topic=self.topics.queue_topic(vm_id).name,
            status=VmStatus.STOPPED,
            registered_at=time.time(),
        )
        self.send("vms", registration.key(), registration.to_bytes())
        self.report(vm_id, None)  # type: ignore[arg-type]

    def io(
        self, vm_id: str, io_ops_per_s: float, seconds: int = 3, end_at: float | None = None
    ) -> None:
        """`seconds` one-second samples of a constant rate, ending now (or at `end_at`)."""
        end = end_at if end_at is not None else time.time()
        for i in range(seconds):
            self._sample(vm_id, end - (seconds - 1 - i), io_ops_per_s)

    def _sample(self, vm_id: str, at: float, io_ops_per_s: float) -> None:
        self._counters[vm_id] = self._counters.get(vm_id, 0) + int(io_ops_per_s)
        sample = IoSample(
            host_id=self.vm_hosts[vm_id],
            vm_id=vm_id,
            sampled_at=at,
            interval_s=1.0,
            io_ops=int(io_ops_per_s),
            counters=IoCounters(block_rd_reqs=self._counters[vm_id]),
        )
        self.send("io-samples", sample.key(), sample.to_bytes())

    def completions(self, vm_id: str, jobs: int, over_s: float = 3.0, job_type: str = "io") -> None:
        now = time.time()
        for i in range(jobs):
            self._complete(vm_id, now - over_s + over_s * (i + 1) / jobs, job_type)

    def _complete(self, vm_id: str, finished: float, job_type: str) -> None:
        self.completed[vm_id] = self.completed.get(vm_id, 0) + 1
        done = JobCompletion(
            job_id=f"done-{vm_id}-{uuid.uuid4().hex[:8]}",
            job_type=job_type,
            vm_id=vm_id,
            host_id=self.vm_hosts[vm_id],
            submitted_at=finished - 0.3,
            dispatched_at=finished - 0.25,
            started_at=finished - 0.2,
            finished_at=finished,
            outcome="succeeded",
        )
        self.send("completions", done.key(), done.to_bytes())

    def report(
        self, vm_id: str, io_ops_per_s: float, jobs_per_s: float = 0.0, job_type: str = "io"
    ) -> None:
        """Keep reporting like a live Dom0 and guest: one sample a second, completions at a rate.

        Rates are windowed as of processing time, so a test must keep its fleet talking rather
        than send a few old events. `report(vm, None)` stops (the host then goes stale).
        """
        if io_ops_per_s is None:
            self._reporting.pop(vm_id, None)
            return
        self._reporting[vm_id] = (io_ops_per_s, jobs_per_s, job_type)
        if self._thread is None:
            self._thread = threading.Thread(target=self._report_loop, daemon=True)
            self._thread.start()

    def _report_loop(self) -> None:
        owed: dict[str, float] = {}
        while not self._stop.wait(1.0):
            now = time.time()
            for vm_id, (io_rate, jobs_rate, job_type) in list(self._reporting.items()):
                self._sample(vm_id, now, io_rate)
                owed[vm_id] = owed.get(vm_id, 0.0) + jobs_rate
                while owed[vm_id] >= 1:
                    owed[vm_id] -= 1
                    self._complete(vm_id, now, job_type)
            self.producer.flush(timeout=10)

    def submit(
        self,
        job_type: str,
        job_id: str | None = None,
        deadline_s: float | None = None,
        **fields: Any,
    ) -> str:
        job = JobSubmission(
            job_id=job_id or uuid.uuid4().hex,
            job_type=job_type,
            submitted_at=time.time(),
            deadline_s=deadline_s,
            **fields,
        )
        self.send("jobs", job.key(), job.to_bytes())
        return job.job_id or ""

    def limit(self, host_id: str, value: float | None) -> None:
        setting = LimitSetting(
            scope=LimitScope.HOST,
            target_id=host_id,
            field=LimitField.IO_LIMIT,
            source=LimitSource.OPERATOR,
            value=value,
            set_at=time.time(),
        )
        self.send("limits", setting.key(), setting.to_bytes())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.producer.close()


def read_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> list[Any]:
    return read_all(kafka, topic, timeout_s)


@pytest.fixture
def fleet(kafka_settings: KafkaSettings, topics: Topics) -> Iterator[FleetDriver]:
    driver = FleetDriver(kafka_settings, topics)
    yield driver
    driver.close()


@pytest.fixture
def start_worker(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Start `vmlb worker` processes for this test (same app id unless given); stopped after."""
    started: list[Worker] = []
    app_id = f"vmlb-test-{uuid.uuid4().hex[:8]}"

    def start(data_dir: Path | None = None, **env: str) -> Worker:
        worker = Worker(kafka_settings, app_id, data_dir or tmp_path / f"w{len(started)}", env)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
