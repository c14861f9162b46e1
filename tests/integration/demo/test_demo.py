"""A short `vmlb demo` on the real broker: every job accounted for, hosts kept under their limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.events import JobCompletion, JobStatus, JobSubmission
from pipeline.ops.ports import free_port
from pipeline.settings import KafkaSettings
from pipeline.topics import topics_of
from pipeline.topics.reader import read_all

DURATION_S = 60
#: Bounds a failure only: the fleet may take up to 300 s to come up on a loaded machine, then the
#: run, its drain (up to 30 s) and the summary's reads.
RUN_BOUND_S = DURATION_S + 420


@pytest.mark.timeout(RUN_BOUND_S + 60)
def test_a_short_demo_loses_nothing_and_keeps_hosts_under_their_limits(kafka_bootstrap, tmp_path):
    env = {**os.environ, "VMLB_BROKER": kafka_bootstrap}
    for name in (
        "VMLB_TOPIC_PREFIX",
        "VMLB_APP_ID",
        "VMLB_DATA_DIR",
        "VMLB_WEB_PORT",
        "VMLB_POLICY",
    ):
        env.pop(name, None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli.main",
            "demo",
            "--duration",
            str(DURATION_S),
            "--no-live",
            "--keep-topics",  # read independently below
            "--web-port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_BOUND_S,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])

    # Every submitted job is completed, waiting, queued on a VM or dead-lettered: none lost.
    assert summary["lost"] == 0, summary
    assert summary["submitted"] > 300
    assert summary["completed"] > 0.5 * summary["submitted"], summary
    accounted = (
        summary["completed"]
        + summary["waiting"]
        + summary["in_queue"]
        + summary["dead_lettered"]
        + summary["unread"]
    )
    assert accounted == summary["submitted"]

    # The topics say the same, read independently of the summary.
    kafka = KafkaSettings(broker=kafka_bootstrap, topic_prefix=summary["topic_prefix"])
    submitted = {
        JobSubmission.from_bytes(r.value).job_id
        for r in read_all(kafka, topics_of(kafka).name("jobs"), 30)
    }
    completed = {
        JobCompletion.from_bytes(r.value).job_id
        for r in read_all(kafka, topics_of(kafka).name("completions"), 30)
    }
    succeeded = {
        status.job_id
        for status in (
            JobStatus.from_bytes(r.value)
            for r in read_all(kafka, topics_of(kafka).name("job-status"), 30)
            if r.value
        )
        if status.state == "succeeded"
    }
    # Every forwarded completion is a job's success. The converse needs a drain: a success the
    # worker had not read yet when the demo stopped it is forwarded by the next worker to own
    # the partition (at-least-once), so a loaded machine may end a demo with a few unforwarded
    # (`vmlb bench chaos` drains, and checks both ways).
    assert completed <= succeeded, completed - succeeded
    assert len(submitted) == summary["submitted"]
    assert completed <= submitted and len(completed) == summary["completed"]

    # The dispatcher steers away from full hosts: across the four hosts, little time was spent
    # long above a limit (past 5 s in a row) while another host had at least 30% of its limit free.
    host_seconds = 4 * DURATION_S
    assert summary["overload_with_headroom_elsewhere_s"] <= 0.1 * host_seconds, summary
    assert summary["p99_response_s"] is not None
