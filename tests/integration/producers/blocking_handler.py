"""A guest handler the tests steer through files (a helper, not a test).

payload: {"flag_dir": DIR, "block": true} -> touch DIR/started-<job>-<pid>, then wait until
DIR/release exists; {"fail": true} -> raise; {"fail_attempts": N} -> raise in attempts 1..N.
Every run touches DIR/ran-<job>-<attempt>-<vm>. So a test knows a job is in hand, and decides
when it may finish, without sleeping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pipeline.events import QueuedJob
from producers.guest.io import IoChannel


def run(job: QueuedJob, io: IoChannel) -> dict[str, Any]:
    flag_dir = Path(job.payload["flag_dir"])
    (flag_dir / f"ran-{job.job_id}-{job.attempt}-{job.vm_id}").touch()
    if job.payload.get("block"):
        (flag_dir / f"started-{job.job_id}-{os.getpid()}").touch()
        while not (flag_dir / "release").exists():
            time.sleep(0.05)
    if job.payload.get("fail"):
        raise RuntimeError("asked to fail")
    if job.attempt <= job.payload.get("fail_attempts", 0):
        raise RuntimeError(f"asked to fail attempt {job.attempt}")
    io.request(2, "block_wr")
    return {"job": job.job_id, "vm": job.vm_id, "attempt": job.attempt}
