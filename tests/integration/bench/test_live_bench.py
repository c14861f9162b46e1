"""`vmlb bench live` on the real broker: two policies, one job trace, a report for each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

DURATION_S = 10
#: Bounds a failure only: each policy's run waits for its fleet (up to 300 s on a loaded
#: machine), runs DURATION_S, drains (up to 30 s) and reads its topics.
RUN_BOUND_S = 2 * (DURATION_S + 420)


@pytest.mark.timeout(RUN_BOUND_S + 60)
def test_bench_live_runs_each_policy_on_the_demo_fleet_with_the_same_trace(
    kafka_bootstrap, tmp_path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMLB_")}
    env["VMLB_BROKER"] = kafka_bootstrap
    out = tmp_path / "report"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli.main",
            "bench",
            "live",
            "--policies",
            "round-robin,io-aware",
            "--duration",
            str(DURATION_S),
            "--json",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_BOUND_S,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    runs = report["policies"]
    assert list(runs) == ["round-robin", "io-aware"]
    for policy, summary in runs.items():
        assert summary["policy"] == policy
        assert summary["lost"] == 0, summary
        assert summary["completed"] > 0, summary
        assert summary["p99_response_s"] is not None
        assert summary["overload_s"] >= 0
    # One seeded trace: the same jobs at the same offsets (the generator may run a little late
    # on a busy machine, so the counts cut at the same duration can differ by a few).
    counts = [summary["submitted"] for summary in runs.values()]
    assert max(counts) - min(counts) <= 0.05 * max(counts), counts
    assert json.loads((out / "results.json").read_text()) == report
    table = (out / "results.md").read_text()
    assert "| round-robin |" in table and "| io-aware |" in table
