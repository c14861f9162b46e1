"""A chaos run's jobs: uniquely identified, submitted at a steady rate in a thread.

Job k of a run has the id `<run tag>-<k>` and is sent at k / rate seconds from the start
(`producers.submit.Submitter`, keyed by the id), whatever the faults do: during a broker outage
the submitter's producer holds the jobs and delivers them when the broker is back (its delivery
timeout is kafka-python's default, 120 s). A job whose delivery failed (an outage longer than
that, as a loaded machine can make of the 45 s one) is sent again once the load is over, with
the same id, as a client retrying an unacknowledged submission would (`resend`). What counts as
submitted is what the `jobs` topic holds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.chaos.scenarios import JOB_TYPE
from pipeline.settings import KafkaSettings


@dataclass
class SteadyLoad:
    kafka: KafkaSettings
    run_tag: str
    jobs: int
    rate_per_s: float
    payload: dict[str, Any]
    sent: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started_at: float | None = None
    resent: int = 0
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def window_s(self) -> float:
        return self.jobs / self.rate_per_s

    def job_id(self, index: int) -> str:
        return f"{self.run_tag}-{index:06d}"

    def start(self) -> None:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def stop(self, timeout_s: float = 150) -> None:
        self._stop.set()
        self.join(timeout_s)

    def resend(self, job_ids: list[str]) -> None:
        """Submit these jobs again (same ids, submitted now); wait for the broker."""
        from producers.errors import SubmitError
        from producers.submit import Submitter

        try:
            with Submitter(self.kafka) as submitter:
                for job_id in job_ids:
                    submitter.submit(JOB_TYPE, self.payload, job_id=job_id)
        except SubmitError as exc:
            self.failures.append(f"resend: {exc}")
        self.resent += len(job_ids)

    def _run(self) -> None:
        from producers.errors import SubmitError
        from producers.submit import Submitter

        started = time.monotonic()
        try:
            submitter = Submitter(self.kafka)
        except SubmitError as exc:
            self.failures.append(f"no submitter: {exc}")
            return
        try:
            for index in range(self.jobs):
                wait_s = started + index / self.rate_per_s - time.monotonic()
                if wait_s > 0 and self._stop.wait(wait_s):
                    break
                job_id = self.job_id(index)
                try:
                    submitter.submit(JOB_TYPE, self.payload, job_id=job_id)
                except SubmitError as exc:
                    self.failures.append(str(exc))
                    continue
                self.sent.append(job_id)
        finally:
            try:
                submitter.close(timeout_s=150)
            except SubmitError as exc:
                self.failures.append(str(exc))
