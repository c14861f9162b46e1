"""`vmlb guest` against the real broker: a job survives SIGKILL and a release past the grace
period and ends exactly once; redeliveries are skipped; bad messages are dead-lettered; its
status records (`job-status`) carry the result or the error, in the job's partition."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kafka import KafkaProducer

from pipeline.events import DeadLetter, JobState, JobStatus, QueuedJob
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, ensure_topic
from producers.guest.completed import CompletedJobs
from producers.guest.io import LocalDiskIoChannel
from producers.guest.worker import GuestWorker
from tests.integration.producers.kafka_reading import TopicReader

REPO = Path(__file__).resolve().parents[3]
HANDLER = "tests.integration.producers.blocking_handler:run"


def queued(job_id: str, vm_id: str, payload: dict) -> QueuedJob:
    now = time.time()
    return QueuedJob(
        job_id=job_id, job_type="steered", payload=payload, vm_id=vm_id, host_id="h1",
        submitted_at=now, dispatched_at=now, policy="test", status_partition=5,
    )  # fmt: skip


def ended(statuses: list[JobStatus]) -> list[JobStatus]:
    return [s for s in statuses if s.terminal]


def start_guest(
    settings: KafkaSettings, vm_id: str, state_dir: Path, *extra: str
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "pipeline.cli.main", "guest",
        "--broker", settings.broker, "--topic-prefix", settings.topic_prefix,
        "--vm", vm_id, "--host-id", "h1", "--handler", HANDLER, "--state-dir", str(state_dir), *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO)


def wait_for_file(pattern_dir: Path, prefix: str, timeout_s: float = 90.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = sorted(pattern_dir.glob(prefix + "*"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {prefix}* in {pattern_dir}")


def test_job_in_hand_survives_kill_and_release_and_completes_once(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    vm_id = "g1"
    queue = topics.queue_topic(vm_id)
    ensure_topic(kafka_settings, queue)
    flags, state = tmp_path / "flags", tmp_path / "state"
    flags.mkdir()
    producer = KafkaProducer(**kafka_settings.to_kafka_python())
    job = queued("job-1", vm_id, {"flag_dir": str(flags), "block": True})
    producer.send(queue.name, job.to_bytes(), key=job.key()).get(timeout=10)
    completions = TopicReader(kafka_settings, topics.name("job-status"), JobStatus)
    guests = []
    try:
        # 1. The first guest takes the job and is killed outright while running it.
        first = start_guest(kafka_settings, vm_id, state)
        guests.append(first)
        wait_for_file(flags, f"started-job-1-{first.pid}")
        first.kill()
        first.wait(timeout=60)

        # 2. The job was never committed: the next guest gets it again. Asked to stop, it waits
        #    its grace period, then releases the job uncommitted and exits cleanly.
        second = start_guest(kafka_settings, vm_id, state, "--grace", "1s")
        guests.append(second)
        wait_for_file(flags, f"started-job-1-{second.pid}")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0

        # 3. A third guest gets it once more, and this time it may finish.
        third = start_guest(kafka_settings, vm_id, state)
        guests.append(third)
        wait_for_file(flags, f"started-job-1-{third.pid}")
        (flags / "release").touch()
        completions.wait_for(
            lambda ev: any(c.job_id == "job-1" for c in ended(ev)), what="job-1 done"
        )

        # 4. The dispatcher re-sends it (e.g. after its own restart): it is not run again. A
        #    sentinel behind it proves the worker has passed the duplicate.
        producer.send(queue.name, job.to_bytes(), key=job.key()).get(timeout=10)
        sentinel = queued("sentinel-1", vm_id, {"flag_dir": str(flags)})
        producer.send(queue.name, sentinel.to_bytes(), key=sentinel.key()).get(timeout=10)
        done = ended(
            completions.wait_for(
                lambda ev: any(c.job_id == "sentinel-1" for c in ended(ev)), what="sentinel"
            )
        )
    finally:
        for guest in guests:
            if guest.poll() is None:
                guest.send_signal(signal.SIGTERM)
                guest.wait(timeout=60)
        producer.close()
        completions.close()
    job_1 = [c for c in done if c.job_id == "job-1"]
    assert len(job_1) == 1
    assert (job_1[0].state, job_1[0].vm_id, job_1[0].host_id) == (JobState.SUCCEEDED, vm_id, "h1")
    assert job_1[0].started_at <= job_1[0].finished_at
    assert job_1[0].result is not None  # the handler's return value travels with its status
    assert completions.partitions_seen() == {5}  # the job's partition of job-status
    assert len(list(flags.glob("started-job-1-*"))) == 3  # run three times, completed once


def test_bad_messages_are_dead_lettered_and_failures_reported(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    vm_id = "g2"
    queue = topics.queue_topic(vm_id)
    ensure_topic(kafka_settings, queue)
    flags = tmp_path / "flags"
    flags.mkdir()
    producer = KafkaProducer(**kafka_settings.to_kafka_python())
    for key, value in [
        (b"k1", b"\xff not json"),
        (b"k2", b'{"job_id": "no-type"}'),
        (b"k3", queued("misrouted", "other-vm", {"flag_dir": str(flags)}).to_bytes()),
        (b"failing", queued("failing", vm_id, {"flag_dir": str(flags), "fail": True}).to_bytes()),
        (b"good", queued("good", vm_id, {"flag_dir": str(flags)}).to_bytes()),
    ]:
        producer.send(queue.name, value, key=key).get(timeout=10)
    producer.close()
    completions = TopicReader(kafka_settings, topics.name("job-status"), JobStatus)
    letters = TopicReader(kafka_settings, topics.name("dead-letters"), DeadLetter)
    guest = start_guest(kafka_settings, vm_id, tmp_path / "state")
    try:
        done = ended(
            completions.wait_for(
                lambda ev: {c.job_id for c in ended(ev)} >= {"failing", "good"}, what="both jobs"
            )
        )
        dead = letters.wait_for(lambda ev: len(ev) >= 3, what="three dead letters")
    finally:
        guest.send_signal(signal.SIGTERM)
        assert guest.wait(timeout=60) == 0
        completions.close()
        letters.close()
    outcome = {c.job_id: (c.state, c.error) for c in done}
    assert outcome["good"] == (JobState.SUCCEEDED, None)
    assert outcome["failing"] == (JobState.FAILED, "RuntimeError: asked to fail")
    assert [(d.source_topic, d.source_partition, d.source_offset, d.stage) for d in dead] == [
        (queue.name, 0, 0, "guest"), (queue.name, 0, 1, "guest"), (queue.name, 0, 2, "guest"),
    ]  # fmt: skip
    assert (
        "not JSON" in dead[0].reason and dead[0].payload and dead[0].payload.startswith("base64:")
    )
    assert "job_type" in dead[1].reason and dead[1].source_key == "k2"
    assert "queued for other-vm" in dead[2].reason


class _Killed(BaseException):
    """The guest's process dying at a chosen point (SIGKILL cannot be aimed that finely)."""


class _KilledBeforeRecording(CompletedJobs):
    """The window a SIGKILL can hit: the end acknowledged by the broker, not yet recorded."""

    def add(self, job_id: str, finished_at: float) -> None:
        raise _Killed(job_id)


def _run_guest(worker: GuestWorker, stop: threading.Event, died: list[BaseException]) -> None:
    try:
        worker.run(stop)
    except _Killed as exc:
        died.append(exc)


def test_a_guest_killed_after_its_end_was_acknowledged_does_not_run_the_job_again(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    # chaos guest-kill (seed 11, 1 of 5 runs) published a job's `succeeded` twice: the guest
    # was killed after the broker acknowledged the end and before the completed-jobs store
    # recorded it, so the next guest ran the job again.
    vm_id = "g3"
    queue = topics.queue_topic(vm_id)
    ensure_topic(kafka_settings, queue)
    runs: list[str] = []

    def counting(job: QueuedJob, io: object) -> dict:
        runs.append(job.job_id)
        return {"ran": len(runs)}

    def worker(completed: CompletedJobs) -> GuestWorker:
        return GuestWorker(
            kafka_settings, topics, vm_id, counting, LocalDiskIoChannel(tmp_path / "io"),
            completed, host_id="h1",
        )  # fmt: skip

    producer = KafkaProducer(**kafka_settings.to_kafka_python())
    job = queued("job-once", vm_id, {})
    producer.send(queue.name, job.to_bytes(), key=job.key()).get(timeout=10)
    producer.close()

    store = tmp_path / "done"
    first_stop, died = threading.Event(), []
    crashing = _KilledBeforeRecording(store)
    first = threading.Thread(target=_run_guest, args=(worker(crashing), first_stop, died))
    first.start()
    first.join(timeout=120)
    crashing.close()
    assert died and runs == ["job-once"], "the first guest ran the job and died recording it"

    second_stop = threading.Event()
    survivor = worker(CompletedJobs(store))
    second = threading.Thread(target=survivor.run, args=(second_stop,))
    second.start()
    try:
        deadline = time.monotonic() + 120
        while survivor.stats.skipped_duplicates + survivor.stats.completed == 0:
            assert time.monotonic() < deadline, "the job was not redelivered to the next guest"
            time.sleep(0.05)
    finally:
        second_stop.set()
        second.join(timeout=60)
        survivor.completed.close()
    assert runs == ["job-once"] and survivor.stats.skipped_duplicates == 1
    statuses = TopicReader(kafka_settings, topics.name("job-status"), JobStatus)
    try:
        read = statuses.read_to_end()
    finally:
        statuses.close()
    assert [s.state for s in ended(read)] == [JobState.SUCCEEDED]
