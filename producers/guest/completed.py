"""The job ids this guest has completed, in a local RocksDB (rocksdict), for deduplication.

A job is recorded only after its completion was acknowledged by the broker, and before its
offset is committed: a redelivered job whose id is here is committed without running it again or
re-publishing anything. Entries older than `ttl_s` are pruned (redeliveries come soon after the
first delivery, or not at all), and so are the oldest beyond `max_entries`.

Before its end is published a job is marked *ending* (`ending`), with the wall-clock time: a
guest killed between the broker's acknowledgement and `add` leaves the mark, and the next guest
looks for the end in `job-status` from that time on (`producers.guest.published`) instead of
running the job again.
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import Options, Rdict

#: The key prefix of an end being published (no job id starts with it: ids are validated).
_ENDING = "\x00ending:"


class CompletedJobs:
    def __init__(self, path: Path, *, ttl_s: float = 7 * 24 * 3600, max_entries: int = 100_000):
        path.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._db = Rdict(str(path), Options(raw_mode=False))
        self._since_prune = 0

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._db

    def ending(self, job_id: str, at_s: float) -> None:
        """Mark `job_id`'s end as about to be published, at wall-clock time `at_s`."""
        self._db[_ENDING + job_id] = at_s

    def ending_since(self, job_id: str) -> float | None:
        """When `job_id`'s end began to be published, if it was and was not recorded done."""
        at = self._db.get(_ENDING + job_id)
        return None if at is None else float(at)

    def add(self, job_id: str, finished_at: float) -> None:
        self._db[job_id] = finished_at
        self._db.delete(_ENDING + job_id)
        self._since_prune += 1
        if self._since_prune >= 1000:
            self.prune(now=finished_at)

    def prune(self, now: float) -> int:
        """Drop entries older than the TTL and the oldest beyond `max_entries`; return how many."""
        self._since_prune = 0
        entries = sorted(((at, job_id) for job_id, at in self._db.items()), reverse=True)
        doomed = [
            job_id
            for i, (at, job_id) in enumerate(entries)
            if now - at > self.ttl_s or i >= self.max_entries
        ]
        for job_id in doomed:
            del self._db[job_id]
        return len(doomed)

    def __len__(self) -> int:
        return sum(1 for key in self._db.keys() if not key.startswith(_ENDING))  # noqa: SIM118

    def close(self) -> None:
        self._db.flush()
        self._db.close()
