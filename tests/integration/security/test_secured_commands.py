"""The secured commands as operators run them: `vmlb broker start --secure` and `vmlb demo
--secure`. Neither prints a password; the demo's parts have every READ and WRITE they need:
the worker dispatches, the guests complete, nothing is dead-lettered, the broker refuses none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.demo.fleet import FLEET
from pipeline.ops.ports import free_port, free_port_run
from pipeline.settings import read_credentials_file
from tests.integration.security.conftest import broker_log

REPO = Path(__file__).resolve().parents[3]
DEMO_S = 30


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMLB_")}
    return {**env, **extra}


def _vmlb(
    *args: str, env: dict[str, str], cwd: Path, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_broker_start_secure_prints_where_the_credentials_are_never_the_password(
    tmp_path: Path,
) -> None:
    data_dir, port = tmp_path / "broker", free_port_run(2)
    env = _env(PYTHONPATH=str(REPO))
    started = _vmlb(
        "broker", "start", "--secure", "--data-dir", str(data_dir), "--port", str(port),
        env=env, cwd=tmp_path, timeout_s=240,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        admin_file = data_dir / "admin.env"
        password = read_credentials_file(admin_file)["sasl_password"]
        assert str(admin_file) in started.stdout.replace("\n", "")
        assert password not in started.stdout + started.stderr
        status = _vmlb(
            "broker", "status", "--data-dir", str(data_dir), env=env, cwd=tmp_path, timeout_s=60
        )
        assert status.returncode == 0 and "running" in status.stdout
        # The same credentials serve any command.
        listed = _vmlb(
            "topics", "apply", "--credentials", str(admin_file), "--dry-run",
            env=env, cwd=tmp_path, timeout_s=120,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert password not in listed.stdout + listed.stderr
    finally:
        stopped = _vmlb(
            "broker", "stop", "--data-dir", str(data_dir), env=env, cwd=tmp_path, timeout_s=90
        )
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not LocalCluster(data_dir).is_running()


def test_the_demo_runs_secured_with_a_principal_per_process(
    secure_cluster: LocalCluster, tmp_path: Path
) -> None:
    env = _env(
        PYTHONPATH=str(REPO),
        VMLB_BROKER=secure_cluster.bootstrap,
        VMLB_CREDENTIALS=str(secure_cluster.admin_credentials_file),
    )
    run = _vmlb(
        "demo", "--secure", "--duration", str(DEMO_S), "--no-live", "--web-port", str(free_port()),
        env=env, cwd=tmp_path, timeout_s=DEMO_S + 300,
    )  # fmt: skip
    # Exit 1 is the demo's "some job not accounted for": on a loaded machine the worker's
    # backlog of undecided jobs counts so (measured: 179 of 1146 jobs without a decision, or
    # made waiting after the last look, at load 9-28 on 2 cores). That accounting is the plain
    # demo test's to hold; here what counts is that every part ran as its own principal.
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["submitted"] > 0 and summary["completed"] > 0, summary
    assert summary["dead_lettered"] == 0, summary
    # A principal per host (Dom0) and per VM (guest), the worker's and the submitter's.
    principals = len(FLEET) + sum(len(host.vms) for host in FLEET) + 2
    assert f"secured: {principals} principals provisioned" in run.stdout.replace("\n", "")

    logs = Path(tmp_path, summary["logs"])
    passwords = [
        read_credentials_file(path)["sasl_password"]
        for path in (logs / "credentials").glob("*.env")
    ] + [read_credentials_file(secure_cluster.admin_credentials_file)["sasl_password"]]
    assert len(passwords) == principals + 1  # and the admin's
    outputs = [run.stdout + run.stderr] + [
        p.read_text(errors="replace") for p in logs.glob("*.log")
    ]
    assert len(outputs) == 6  # the demo's own, the worker's, four hosts'
    for text in outputs:
        assert not any(password in text for password in passwords)

    # Every read and write the demo's parts tried was allowed. (Refused: guests' attempts to
    # create their own queue topic before their Dom0 does, and the authorized-operations part
    # of kafka-python's DescribeCluster; both by design.)
    prefix = summary["topic_prefix"]
    refused = [
        line
        for line in broker_log(secure_cluster).splitlines()
        if "Denied operation" in line
        and prefix in line
        and ("operation = READ " in line or "operation = WRITE " in line)
    ]
    assert not refused, refused[:5]
