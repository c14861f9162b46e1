"""Job submission: the `Submitter` API, `.jsonl` files, and a load generator (`vmlb submit`).

A submission is one `JobSubmission` JSON object on the jobs topic, keyed by its job id: any Kafka
client in any language can do the same. Here every submission gets a job id (a uuid) and a
`submitted_at` unless it carries its own, so it can be followed through decisions and
completions. Invalid input is refused before anything is sent, with the field (and for files the
line) at fault.
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
from pipeline.events import JobSubmission, new_job_id
from pipeline.settings import KafkaSettings
from pipeline.topics import topics_of
from producers.errors import SubmitError

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


class Submitter:
    """Submit jobs to the jobs topic. `submit()` returns the job id at once; `flush()`/`close()`
    wait for the broker and raise SubmitError if any submission was not acknowledged."""

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
        self.topic = topic or topics_of(self.settings).name("jobs")
        self.clock = clock
        self._failures: list[str] = []
        self.sent = 0
        try:
            self._producer = KafkaProducer(
                client_id="vmlb-submit",
                acks="all",
                linger_ms=5,
                max_block_ms=10_000,
                **self.settings.to_kafka_python(),
            )
        except KafkaError as exc:
            raise SubmitError(f"Kafka at {self.settings.broker}: {exc}") from None

    def submit(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
        job_id: str | None = None,
    ) -> str:
        data: dict[str, Any] = {"job_type": job_type, "payload": dict(payload or {})}
        if deadline_s is not None:
            data["deadline_s"] = deadline_s
        if job_id is not None:
            data["job_id"] = job_id
        try:
            submission = build_submission(data, now=self.clock())
        except EventError as exc:
            raise SubmitError(str(exc)) from None
        return self.send(submission)

    def send(self, submission: JobSubmission) -> str:
        """Send an already validated submission (one with a job id); return its job id."""
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
        return submission.job_id

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
            self._producer.close(timeout=timeout_s)

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
        job_ids.append(submitter.submit(job_type, plan.payload, plan.deadline_s))
    return job_ids
