"""The job ids this guest has completed, in a local RocksDB (rocksdict), for deduplication.

A job is recorded only after its completion was acknowledged by the broker, and before its
offset is committed: a redelivered job whose id is here is committed without running it again or
re-publishing anything. Entries older than `ttl_s` are pruned (redeliveries come soon after the
first delivery, or not at all), and so are the oldest beyond `max_entries`.
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import Options, Rdict


class CompletedJobs:
    def __init__(self, path: Path, *, ttl_s: float = 7 * 24 * 3600, max_entries: int = 100_000):
        path.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._db = Rdict(str(path), Options(raw_mode=False))
        self._since_prune = 0

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._db

    def add(self, job_id: str, finished_at: float) -> None:
        self._db[job_id] = finished_at
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
        return sum(1 for _ in self._db.keys())  # noqa: SIM118 (Rdict iterates by index)

    def close(self) -> None:
        self._db.flush()
        self._db.close()
