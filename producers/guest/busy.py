"""What a guest can see of its own load: its CPU busy fraction, and how long it waits for I/O.

This is the paper's blind spot made visible. A guest's view of itself is its CPU: time spent
computing over wall time. Waiting for I/O is not busy from inside the guest (Linux counts
iowait as idle), so an I/O-heavy guest on a saturated host looks nearly idle to itself while its
host's I/O channel is at capacity. The host's view (the channel's counters and busy time) is what
Dom0 publishes; the pipeline derives a VM's busy fraction from completion timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BusyReport:
    window_s: float
    #: CPU time of the guest process over wall time: what a guest-side monitor reports.
    cpu_busy_fraction: float
    #: Time spent inside jobs over wall time.
    in_jobs_fraction: float
    #: Of the time inside jobs, the part spent waiting for the host's I/O.
    io_wait_fraction: float
    jobs: int


class BusyMeter:
    def __init__(
        self,
        wall: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._wall = wall
        self._cpu = cpu
        self._reset()

    def _reset(self) -> None:
        self._since = self._wall()
        self._cpu_at = self._cpu()
        self._in_jobs_s = 0.0
        self._io_wait_s = 0.0
        self._jobs = 0

    def job_done(self, service_s: float, io_wait_s: float) -> None:
        self._in_jobs_s += service_s
        self._io_wait_s += io_wait_s
        self._jobs += 1

    def report(self) -> BusyReport:
        """The fractions since the last report (then start a new window)."""
        window_s = max(self._wall() - self._since, 1e-9)
        cpu_s = self._cpu() - self._cpu_at
        report = BusyReport(
            window_s=window_s,
            cpu_busy_fraction=min(1.0, max(0.0, cpu_s / window_s)),
            in_jobs_fraction=min(1.0, self._in_jobs_s / window_s),
            io_wait_fraction=min(1.0, self._io_wait_s / self._in_jobs_s)
            if self._in_jobs_s
            else 0.0,
            jobs=self._jobs,
        )
        self._reset()
        return report
