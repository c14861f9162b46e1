"""Job submission: the `Submitter` API, `.jsonl` files, and a load generator (`vmlb submit`).

A submission is one `JobSubmission` JSON object on the jobs topic, keyed by its job id: any Kafka
client in any language can do the same. Here every submission gets a job id (a uuid) and a
`submitted_at` unless it carries its own, so it can be followed on `job-status`. Invalid input is
refused before anything is sent, with the field (and for files the line) at fault.

    with Submitter() as submitter:
        job = submitter.submit("io-heavy", {"io_ops": 400}, max_attempts=3)
        job.status()            # its latest JobStatus (waiting, dispatched, running, ...)
        job.result(timeout=60)  # the handler's result once it succeeded; JobFailed otherwise
        submitter.cancel(job)
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import EventError
from pipeline.events import JobControl, JobState, JobStatus, JobSubmission, new_job_id
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, topics_of
from pipeline.topics.jobs import latest_status, wait_for_status
from producers.errors import JobFailed, SubmitError
from producers.kafka_edge import close_producer

# --- parsing (pure) -----------------------------------------------------------------------------


def build_submission(data: Any, *, now: float) -> JobSubmission:
    """Validate one submission (a dict as in the JSON format); fill in job_id and submitted_at."""
    submission = JobSubmission.from_dict(data)  # EventError names the field
    updates: dict[str, Any] = {}
    if submission.job_id is None:
        updates["job_id"] = new_job_id()
    if submission.submitted_at is None:
        updates["submitted_at"] = now
    return submission.model_copy(update=updates) if updates else submission


def parse_payload(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmitError(f"--payload: not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise SubmitError(f"--payload: expected a JSON object, got {type(payload).__name__}")
    return payload


def parse_jobs_lines(
    lines: Iterable[str], *, now: float, source: str = "jobs file"
) -> list[JobSubmission]:
    """One JSON object per line; blank lines and `#` comments are skipped. The first bad line
    raises SubmitError naming its number and field; nothing is submitted then."""
    submissions = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubmitError(f"{source}: line {number}: not JSON: {exc}") from None
        try:
            submissions.append(build_submission(data, now=now))
        except EventError as exc:
            raise SubmitError(f"{source}: line {number}: {exc}") from None
    return submissions


def parse_mix(text: str) -> dict[str, float]:
    """`io-heavy=0.5,cpu-heavy=0.5` -> weights normalised to sum 1."""
    weights: dict[str, float] = {}
    for entry in (part.strip() for part in text.split(",")):
        job_type, sep, weight_text = entry.partition("=")
        job_type = job_type.strip()
        if not sep or not job_type:
            raise SubmitError(f"--mix: {entry!r}: expected JOB_TYPE=WEIGHT")
        try:
            weight = float(weight_text)
        except ValueError:
            raise SubmitError(
                f"--mix: {job_type}: weight {weight_text!r} is not a number"
            ) from None
        if not math.isfinite(weight) or weight < 0:
            raise SubmitError(f"--mix: {job_type}: weight must be >= 0, got {weight_text}")
        try:
            JobSubmission.from_dict({"job_type": job_type})
        except EventError as exc:
            raise SubmitError(f"--mix: {exc}") from None
        weights[job_type] = weights.get(job_type, 0.0) + weight
    total = sum(weights.values())
    if total <= 0:
        raise SubmitError("--mix: the weights add up to 0")
    return {job_type: weight / total for job_type, weight in weights.items()}


def arrival_offsets_s(rate_per_s: float, count: int, ramp_s: float = 0.0) -> list[float]:
    """When each of `count` jobs is sent, in seconds from the start, at `rate_per_s`.

    With a ramp, the rate grows linearly from 0 to `rate_per_s` over `ramp_s` seconds, then stays:
    job k is sent when the cumulative rate integral reaches k.
    """
    if rate_per_s <= 0:
        raise SubmitError(f"--rate: must be > 0, got {rate_per_s}")
    if ramp_s < 0:
        raise SubmitError(f"--ramp: must be >= 0, got {ramp_s}")
    ramp_jobs = rate_per_s * ramp_s / 2  # jobs sent during the ramp
    offsets = []
    for k in range(count):
        if k < ramp_jobs:
            offsets.append(math.sqrt(2 * k * ramp_s / rate_per_s))
        else:
            offsets.append(ramp_s + (k - ramp_jobs) / rate_per_s)
    return offsets


def pick_types(mix: Mapping[str, float], count: int, rng: random.Random) -> list[str]:
    job_types = list(mix)
    return rng.choices(job_types, weights=[mix[t] for t in job_types], k=count)


# --- sending (Kafka edge) -------------------------------------------------------------------------


class JobHandle(str):
    """A submitted job: its id (it is the id, as a string) and how to follow it."""

    settings: KafkaSettings
    topics: Topics

    def __new__(cls, job_id: str, settings: KafkaSettings, topics: Topics) -> JobHandle:
        handle = super().__new__(cls, job_id)
        handle.settings = settings
        handle.topics = topics
        return handle

    @property
    def job_id(self) -> str:
        return str(self)

    def status(self, timeout_s: float = 30.0) -> JobStatus | None:
        """Its latest record on `job-status` (None until the dispatcher has taken it)."""
        return latest_status(self.settings, self.topics, self.job_id, timeout_s)

    def wait(self, timeout: float = 60.0) -> JobStatus:
        """Until it ended; its final status. SubmitError if it has not ended in `timeout` s."""
        status = wait_for_status(self.settings, self.topics, self.job_id, timeout_s=timeout)
        if status is None or not status.terminal:
            state = status.state.value if status else "not seen yet"
            raise SubmitError(f"job {self.job_id}: not ended after {timeout:g}s ({state})")
        return status

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        """The handler's result once the job succeeded; JobFailed (with its status) if it
        failed, expired, was cancelled or dead-lettered."""
        status = self.wait(timeout)
        if status.state is not JobState.SUCCEEDED:
            raise JobFailed(status)
        return status.result or {}


class Submitter:
    """Submit jobs to the jobs topic. `submit()` returns a `JobHandle` at once; `flush()`/
    `close()` wait for the broker and raise SubmitError if any submission was not acknowledged."""

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        topic: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.settings = settings or KafkaSettings()
        self.topics = topics_of(self.settings)
        self.topic = topic or self.topics.name("jobs")
        self.clock = clock
        self._failures: list[str] = []
        self.sent = 0
        try:
            self._producer = KafkaProducer(
                **self.settings.to_kafka_python_producer(
                    client_id="vmlb-submit", linger_ms=5, max_block_ms=10_000
                )
            )
        except KafkaError as exc:
            raise SubmitError(f"Kafka at {self.settings.broker}: {exc}") from None

    def submit(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
        job_id: str | None = None,
        *,
        max_attempts: int | None = None,
        priority: int | None = None,
        submitter: str | None = None,
    ) -> JobHandle:
        data: dict[str, Any] = {"job_type": job_type, "payload": dict(payload or {})}
        optional = {
            "deadline_s": deadline_s,
            "job_id": job_id,
            "max_attempts": max_attempts,
            "priority": priority,
            "submitter": submitter,
        }
        data.update({name: value for name, value in optional.items() if value is not None})
        try:
            submission = build_submission(data, now=self.clock())
        except EventError as exc:
            raise SubmitError(str(exc)) from None
        return self.send(submission)

    def cancel(self, job_id: str, reason: str | None = None) -> None:
        """Ask for a job to be cancelled (`job-control`): see `JobControl` for what follows."""
        from kafka.errors import KafkaError

        try:
            control = JobControl(
                job_id=job_id, requested_at=self.clock(), reason=reason, requested_by=None
            )
        except ValueError as exc:
            raise SubmitError(f"cancel {job_id!r}: {exc}") from None
        try:
            self._producer.send(
                self.topics.name("job-control"), value=control.to_bytes(), key=control.key()
            ).get(timeout=30)
        except KafkaError as exc:
            raise SubmitError(f"cancel of {job_id} not acknowledged: {exc}") from None

    def send(self, submission: JobSubmission) -> JobHandle:
        """Send an already validated submission (one with a job id); return its handle."""
        from kafka.errors import KafkaError

        assert submission.job_id is not None
        try:
            future = self._producer.send(
                self.topic, value=submission.to_bytes(), key=submission.key()
            )
        except KafkaError as exc:
            raise SubmitError(f"job {submission.job_id}: not sent to {self.topic}: {exc}") from None
        future.add_errback(lambda exc: self._failures.append(f"{submission.job_id}: {exc}"))
        self.sent += 1
        return JobHandle(submission.job_id, self.settings, self.topics)

    def flush(self, timeout_s: float = 30.0) -> None:
        from kafka.errors import KafkaError

        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise SubmitError(f"{self.topic}: submissions not acknowledged: {exc}") from None
        if self._failures:
            failures, self._failures = self._failures, []
            raise SubmitError(
                f"{len(failures)} submission(s) to {self.topic} failed: " + "; ".join(failures[:5])
            )

    def close(self, timeout_s: float = 30.0) -> None:
        try:
            self.flush(timeout_s)
        finally:
            # Never raises (kafka-python's close would, and hide the SubmitError above).
            close_producer(self._producer, timeout_s, "vmlb-submit")

    def __enter__(self) -> Submitter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LoadPlan:
    rate_per_s: float
    count: int
    mix: Mapping[str, float]
    ramp_s: float = 0.0
    payload: Mapping[str, Any] | None = None
    deadline_s: float | None = None
    seed: int | None = None
    max_attempts: int | None = None
    priority: int | None = None
    submitter: str | None = None


def run_load(
    submitter: Submitter,
    plan: LoadPlan,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[str]:
    """Submit `plan.count` jobs at the planned times; return their ids in order."""
    offsets = arrival_offsets_s(plan.rate_per_s, plan.count, plan.ramp_s)
    job_types = pick_types(plan.mix, plan.count, random.Random(plan.seed))
    started = clock()
    job_ids = []
    for offset_s, job_type in zip(offsets, job_types, strict=True):
        if should_stop():
            break
        wait_s = started + offset_s - clock()
        if wait_s > 0:
            sleep(wait_s)
        job_ids.append(
            submitter.submit(
                job_type,
                plan.payload,
                plan.deadline_s,
                max_attempts=plan.max_attempts,
                priority=plan.priority,
                submitter=plan.submitter,
            )
        )
    return job_ids
