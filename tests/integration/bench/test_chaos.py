"""`vmlb bench chaos`, short: three scenarios on the real broker, fleet and workers, counted
from the topics. The full runs are a benchmark (docs/evaluation.md); this is the guard that
a crash of a worker or a guest loses, strands and duplicates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.chaos.scenarios import JOB_TYPE

JOBS = 200
RATE_PER_S = 10.0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("scenario", ["none", "worker-kill", "guest-kill"])
def test_no_job_is_lost_stranded_or_run_twice_under_the_fault(scenario, kafka_bootstrap, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMLB_")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli.main",
            "bench",
            "chaos",
            "--scenario",
            scenario,
            "--jobs",
            str(JOBS),
            "--rate",
            str(RATE_PER_S),
            "--seed",
            "3",
            "--broker",
            kafka_bootstrap,
            "--json",
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
    )
    output = run.stdout.strip().splitlines()
    assert output, run.stderr[-5000:]
    report = json.loads(output[-1])
    (result,) = report["runs"]
    detail = json.dumps({k: v for k, v in result.items() if k != "faults"}, indent=1)
    assert run.returncode == 0, detail + run.stderr[-3000:]
    assert result["submitted"] == JOBS, detail
    assert result["completed"] == JOBS, detail
    assert result["lost"] == 0 and result["stranded"] == 0, detail
    assert result["ran_on_two_vms"] == 0, detail
    assert result["queued_without_decision"] == 0, detail
    assert result["completion_forwarded_twice"] == 0, detail
    if scenario != "guest-kill":
        # A guest killed between its report and its own record of it runs the redelivered job
        # again and reports it again (at-least-once; the dispatcher refuses the second): only
        # a guest kill may do that.
        assert result["end_published_twice"] == 0, detail
    if scenario == "none":
        # Without a fault no job waits for room (a third of the fleet's limits is offered). A
        # job may wait a moment for a VM's queue topic to reach the dispatcher's metadata, at
        # the start: that is not capacity.
        assert result["faults"] == [], detail
        for_room = {
            reason: count
            for reason, count in result["wait_reasons"].items()
            # "queue topic ... of VM X is missing", or behind such a job (cut at 80)
            if not reason.removeprefix(f"behind waiting {JOB_TYPE} jobs; the first: ").startswith(
                "queue topic "
            )
        }
        assert for_room == {}, detail
        # (the harness keeps the five commonest reasons: they must be every wait)
        assert sum(result["wait_reasons"].values()) == result["waited"], detail
        return
    faults = result["faults"]
    assert faults and all(f["kind"] == scenario for f in faults), faults
    if scenario == "worker-kill":
        # The restarted worker dispatches again (the time is the benchmark's to judge).
        assert all(f["first_dispatch_s"] is not None for f in faults), faults
        assert result["unplanned_worker_exits"] == [], detail
    assert all(f["backlog_recovery_s"] is not None for f in faults), faults
