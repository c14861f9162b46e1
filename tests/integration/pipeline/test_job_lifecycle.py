"""A job's whole life on the real broker, with a real worker and real `vmlb guest` processes.

Each test follows jobs on `job-status` as a submitter would (`vmlb job status|wait|cancel`,
the `Submitter` handle): waiting -> dispatched -> running -> succeeded with a result; failed ->
retried on another VM -> succeeded; expired; cancelled before and after dispatch; a stopped
VM's jobs completed elsewhere exactly once; a drained host emptied without loss; priority
order under overload.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.events import DeadLetter, DispatchDecision, JobState, JobStatus
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from pipeline.topics.jobs import latest_status, wait_for_status
from producers.submit import Submitter
from tests.integration.pipeline.conftest import FleetDriver, read_topic, wait_for
from tests.integration.pipeline.test_dispatch import FAST, hosts_by_id, metered_over_limit

REPO = Path(__file__).resolve().parents[3]
HANDLER = "tests.integration.producers.blocking_handler:run"
VMS = {"a1": "h1", "b1": "h2"}


class Guests:
    def __init__(self, kafka: KafkaSettings, state: Path) -> None:
        self.kafka = kafka
        self.state = state
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, vm_id: str) -> None:
        command = [
            sys.executable, "-m", "pipeline.cli.main", "guest",
            "--broker", self.kafka.broker, "--topic-prefix", self.kafka.topic_prefix,
            "--vm", vm_id, "--host-id", VMS[vm_id], "--handler", HANDLER,
            "--state-dir", str(self.state / vm_id), "--grace", "1s",
        ]  # fmt: skip
        self.processes[vm_id] = subprocess.Popen(command, cwd=REPO)

    def kill(self, vm_id: str) -> None:
        process = self.processes.pop(vm_id)
        process.kill()
        process.wait(timeout=20)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            process.wait(timeout=30)


@pytest.fixture
def world(
    kafka_settings: KafkaSettings, topics: Topics, fleet: FleetDriver, start_worker, tmp_path: Path
) -> Iterator[tuple[FleetDriver, Guests, Path]]:
    for vm_id, host_id in VMS.items():
        fleet.host(host_id, io_limit=1000)
        fleet.vm(vm_id, host_id, "io")
        fleet.report(vm_id, 100, jobs_per_s=5)
    fleet.flush()
    global WORKER
    WORKER = start_worker(**FAST, VMLB_RETRY_BACKOFF_S="0.5", VMLB_LEASE_S="600")
    flags = tmp_path / "flags"
    flags.mkdir()
    guests = Guests(kafka_settings, tmp_path / "guests")
    for vm_id in VMS:
        guests.start(vm_id)
    yield fleet, guests, flags
    guests.stop()


def status_of(kafka: KafkaSettings, topics: Topics, job_id: str) -> JobStatus | None:
    return latest_status(kafka, topics, job_id, timeout_s=10)


def history(kafka: KafkaSettings, topics: Topics, job_id: str) -> list[JobStatus]:
    return [
        JobStatus.from_bytes(r.value)
        for r in read_topic(kafka, topics.name("job-status"))
        if r.key == job_id.encode() and r.value
    ]


def ended(kafka: KafkaSettings, topics: Topics, job_id: str, timeout_s: float = 60) -> JobStatus:
    final = wait_for_status(kafka, topics, job_id, timeout_s=timeout_s)
    assert final is not None and final.terminal, f"{job_id} did not end: {final}"
    return final


def vmlb(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args, "--broker", kafka.broker,
         "--topic-prefix", kafka.topic_prefix],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


#: The test's worker (set by the `world` fixture).
WORKER = None


def over_limit(host_id: str) -> bool:
    """Refused because Dom0 meters it over its limit (a host whose VM's queue topic does not
    exist yet is refused too, for that reason: it would pass for saturated)."""
    assert WORKER is not None
    return metered_over_limit(WORKER, host_id)


def eligible(host_id: str) -> bool | None:
    assert WORKER is not None
    return hosts_by_id(WORKER).get(host_id, {}).get("eligible")


def saturate(fleet: FleetDriver, *vms: str) -> None:
    """Report the VMs' hosts over their limits, until the worker sees them so."""
    for vm_id in vms or VMS:
        fleet.report(vm_id, 1500, jobs_per_s=5)
    for vm_id in vms or VMS:
        wait_for(lambda v=vm_id: over_limit(VMS[v]), what=f"{VMS[vm_id]} saturated")


def free(fleet: FleetDriver, *vms: str) -> None:
    """Report the VMs' hosts well under their limits, until the worker sees them so."""
    for vm_id in vms or VMS:
        fleet.report(vm_id, 100, jobs_per_s=5)
    for vm_id in vms or VMS:
        wait_for(lambda v=vm_id: eligible(VMS[v]) is True, what=f"{VMS[vm_id]} free")


def test_waiting_then_dispatched_then_succeeded_with_its_result(world, kafka_settings, topics):
    fleet, _, flags = world
    saturate(fleet)
    job_id = fleet.submit("io", payload={"flag_dir": str(flags)})
    fleet.flush()
    waiting = wait_for(
        lambda: (
            (s := status_of(kafka_settings, topics, job_id)) and s.state is JobState.WAITING and s
        ),
        what="the job waiting",
    )
    assert waiting.funnel and waiting.funnel[0].remaining == 2
    assert waiting.funnel[-1].remaining == 0 and "at limit (hysteresis)" in (waiting.reason or "")
    free(fleet)
    done = vmlb(kafka_settings, "job", "wait", job_id, "--timeout", "60s", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    final = JobStatus.model_validate_json(done.stdout)
    assert final.state is JobState.SUCCEEDED and final.result == {
        "job": job_id,
        "vm": final.vm_id,
        "attempt": 1,
    }
    states = [s.state for s in history(kafka_settings, topics, job_id)]
    assert states[0] is JobState.WAITING and states[-1] is JobState.SUCCEEDED
    assert {JobState.DISPATCHED, JobState.RUNNING} <= set(states)
    shown = vmlb(kafka_settings, "job", "status", job_id)
    assert shown.returncode == 0 and "succeeded" in shown.stdout


def test_a_failed_attempt_is_retried_on_the_other_vm_and_succeeds(world, kafka_settings, topics):
    _, _, flags = world
    with Submitter(kafka_settings) as submitter:
        job = submitter.submit("io", {"flag_dir": str(flags), "fail_attempts": 1}, max_attempts=2)
    result = job.result(timeout=60)
    assert result["attempt"] == 2
    runs = sorted(path.name for path in flags.glob(f"ran-{job}-*"))
    first_vm, second_vm = runs[0].rsplit("-", 1)[1], runs[1].rsplit("-", 1)[1]
    assert [r.split("-")[-2] for r in runs] == ["1", "2"] and first_vm != second_vm
    states = [s.state for s in history(kafka_settings, topics, job)]
    assert JobState.RETRYING in states and states[-1] is JobState.SUCCEEDED


def test_the_last_failed_attempt_is_dead_lettered_with_every_error(world, kafka_settings, topics):
    fleet, _, flags = world
    job_id = fleet.submit("io", payload={"flag_dir": str(flags), "fail": True}, max_attempts=2)
    fleet.flush()
    final = ended(kafka_settings, topics, job_id)
    assert final.state is JobState.FAILED
    assert final.errors == ["RuntimeError: asked to fail"] * 2
    letters = [
        DeadLetter.from_bytes(r.value)
        for r in read_topic(kafka_settings, topics.name("dead-letters"))
    ]
    assert any(d.job_id == job_id and "failed after 2 attempt(s)" in d.reason for d in letters)


def test_a_job_past_its_deadline_expires(world, kafka_settings, topics):
    fleet, _, flags = world
    saturate(fleet)
    job_id = fleet.submit("io", deadline_s=2.0, payload={"flag_dir": str(flags)})
    fleet.flush()
    assert ended(kafka_settings, topics, job_id).state is JobState.EXPIRED
    assert not list(flags.glob(f"ran-{job_id}-*"))


def test_a_waiting_job_is_cancelled_and_never_runs(world, kafka_settings, topics):
    fleet, _, flags = world
    saturate(fleet)
    job_id = fleet.submit("io", payload={"flag_dir": str(flags)})
    fleet.flush()
    wait_for(
        lambda: (s := status_of(kafka_settings, topics, job_id)) and s.state is JobState.WAITING,
        what="waiting",
    )
    cancelled = vmlb(kafka_settings, "job", "cancel", job_id, "--reason", "not needed")
    assert cancelled.returncode == 0, cancelled.stderr
    final = ended(kafka_settings, topics, job_id)
    assert final.state is JobState.CANCELLED
    free(fleet)
    again = vmlb(kafka_settings, "job", "cancel", job_id)
    assert again.returncode == 2 and "already ended: cancelled" in again.stderr
    assert not list(flags.glob(f"ran-{job_id}-*"))


def test_a_dispatched_job_cancelled_before_it_starts_is_skipped_by_its_guest(
    world, kafka_settings, topics
):
    _, _, flags = world
    with Submitter(kafka_settings) as submitter:
        # A blocking job on each VM keeps the guests busy; the next job queues behind one.
        blockers = [submitter.submit("io", {"flag_dir": str(flags), "block": True}) for _ in VMS]
        wait_for(lambda: len(list(flags.glob("started-*"))) == 2, what="both guests busy")
        queued_job = submitter.submit("io", {"flag_dir": str(flags)})
        wait_for(
            lambda: (s := queued_job.status()) and s.state is JobState.DISPATCHED,
            what="queued behind a blocker",
        )
        submitter.cancel(queued_job)
        wait_for(lambda: (s := queued_job.status()) and s.cancel_requested, what="cancel seen")
    (flags / "release").touch()
    assert ended(kafka_settings, topics, queued_job).state is JobState.CANCELLED
    for blocker in blockers:
        assert ended(kafka_settings, topics, blocker).state is JobState.SUCCEEDED
    assert not list(flags.glob(f"ran-{queued_job}-*"))


def test_a_stopped_vms_queued_jobs_complete_elsewhere_exactly_once(world, kafka_settings, topics):
    fleet, guests, flags = world
    guests.kill("a1")  # its queue now only fills
    saturate(fleet, "b1")  # so that jobs go to a1 (the one with room)
    job_ids = [fleet.submit("io", payload={"flag_dir": str(flags)}) for _ in range(4)]
    fleet.flush()
    wait_for(
        lambda: all(
            (s := status_of(kafka_settings, topics, j)) and s.vm_id == "a1" for j in job_ids
        ),
        what="all four queued on a1",
    )
    free(fleet, "b1")
    fleet.vm_stopped("a1")  # its Dom0 says it stopped
    fleet.flush()
    finals = [ended(kafka_settings, topics, job_id) for job_id in job_ids]
    assert {(f.state, f.vm_id) for f in finals} == {(JobState.SUCCEEDED, "b1")}
    for job_id in job_ids:
        assert len(list(flags.glob(f"ran-{job_id}-*"))) == 1  # ran once
    for job_id in job_ids:
        status = status_of(kafka_settings, topics, job_id)
        assert status is not None and status.state is JobState.SUCCEEDED


def test_a_drained_host_is_emptied_without_loss(world, kafka_settings, topics):
    fleet, guests, flags = world
    guests.kill("a1")
    saturate(fleet, "b1")
    job_ids = [fleet.submit("io", payload={"flag_dir": str(flags)}) for _ in range(3)]
    fleet.flush()
    wait_for(
        lambda: all(
            (s := status_of(kafka_settings, topics, j)) and s.vm_id == "a1" for j in job_ids
        ),
        what="queued on a1",
    )
    free(fleet, "b1")
    drained = vmlb(kafka_settings, "host", "drain", "h1", "--reason", "test")
    assert drained.returncode == 0, drained.stderr
    finals = [ended(kafka_settings, topics, job_id) for job_id in job_ids]
    assert {(f.state, f.vm_id) for f in finals} == {(JobState.SUCCEEDED, "b1")}
    more = fleet.submit("io", payload={"flag_dir": str(flags)})
    fleet.flush()
    assert ended(kafka_settings, topics, more).vm_id == "b1"  # a draining host takes no jobs


def test_waiting_jobs_leave_in_priority_order(world, kafka_settings, topics):
    fleet, _, flags = world
    saturate(fleet)
    low = [fleet.submit("io", priority=1, payload={"flag_dir": str(flags)}) for _ in range(3)]
    high = [fleet.submit("io", priority=8, payload={"flag_dir": str(flags)}) for _ in range(3)]
    fleet.flush()
    wait_for(
        lambda: all(
            (s := status_of(kafka_settings, topics, j)) and s.state is JobState.WAITING
            for j in low + high
        ),
        what="all six waiting",
    )
    free(fleet)
    for job_id in low + high:
        ended(kafka_settings, topics, job_id)
    made = [
        DispatchDecision.from_bytes(r.value)
        for r in read_topic(kafka_settings, topics.name("decisions"))
    ]  # partition by partition: put them in the order they were made
    dispatched = [
        d.job_id
        for d in sorted(made, key=lambda d: d.decided_at)
        if d.outcome == "dispatched" and d.job_id in low + high
    ]
    assert set(dispatched[:3]) == set(high)


def test_a_submitter_handle_reports_status_as_json(world, kafka_settings, topics):
    _, _, flags = world
    with Submitter(kafka_settings) as submitter:
        job = submitter.submit("io", {"flag_dir": str(flags)}, priority=7, submitter="team-a")
    assert job.result(timeout=60)["job"] == job
    status = job.status()
    assert status is not None and status.job.submitter == "team-a"
    assert json.loads(status.to_bytes())["state"] == "succeeded"
