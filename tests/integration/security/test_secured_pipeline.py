"""The whole pipeline on the secured broker, each part as its own principal: `vmlb worker`,
`vmlb host` (its Dom0 and guests, each with its own credentials file), a submitter. Jobs are
dispatched and completed, and no password appears in any process's output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.cli.common import console
from pipeline.events import DeadLetter, JobCompletion
from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.security.grants import Role
from pipeline.ops.worker_process import WorkerProcess
from pipeline.settings import KafkaSettings
from pipeline.topics.reader import read_all
from producers.submit import Submitter
from tests.integration.security.conftest import Principals, wait_for

REPO = Path(__file__).resolve().parents[3]


def _vmlb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_pipeline_runs_with_a_principal_per_part(
    secure_cluster: LocalCluster, admin: KafkaSettings, principals: Principals, tmp_path: Path
) -> None:
    host_id, app_id = principals.id("h"), principals.id("app")
    vms = [principals.id("io"), principals.id("cpu")]
    # Provisioned with the command operators use, as the super user.
    provisioned = _vmlb(
        "acl", "provision",
        "--credentials", str(secure_cluster.admin_credentials_file),
        "--topic-prefix", admin.topic_prefix,
        "--credentials-dir", str(principals.credentials_dir),
        "--worker", app_id, "--dom0", host_id, "--submitter", "ci-" + principals.suffix,
        *[arg for vm in vms for arg in ("--guest", vm)],
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    passwords = [
        principals.settings_of(role, pid).sasl_password.get_secret_value()  # type: ignore[union-attr]
        for role, pid in [
            (Role.WORKER, app_id),
            (Role.DOM0, host_id),
            (Role.SUBMITTER, "ci-" + principals.suffix),
            *[(Role.GUEST, vm) for vm in vms],
        ]
    ]
    passwords.append(admin.sasl_password.get_secret_value())  # type: ignore[union-attr]

    worker = WorkerProcess(
        principals.settings_of(Role.WORKER, app_id), app_id, tmp_path / "worker", loglevel="debug"
    )
    host_log = tmp_path / "host.log"
    with open(host_log, "w") as out:
        host = subprocess.Popen(
            [
                sys.executable, "-m", "pipeline.cli.main", "-vv", "host",
                "--broker", admin.broker, "--topic-prefix", admin.topic_prefix,
                "--credentials-dir", str(principals.credentials_dir),
                "--id", host_id, "--io-capacity", "2000", "--io-limit", "1500",
                "--vm", f"{vms[0]}:io-heavy", "--vm", f"{vms[1]}:cpu-heavy",
                "--dom0-interval", "0.5", "--state-dir", str(tmp_path / "host"),
                "--guest-grace", "2",
            ],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # Nothing to inherit: each child must connect with its own file.
            env={k: v for k, v in os.environ.items() if not k.startswith("VMLB_")},
        )  # fmt: skip
    try:
        worker.wait_ready(timeout_s=120)
        wait_for(
            lambda: (
                len(worker.get("/hosts")["hosts"]) == 1
                and len(worker.get("/hosts")["hosts"][0]["vms"]) == 2
            ),
            90,
            what="the host and its two VMs registered",
        )
        submitter = principals.settings_of(Role.SUBMITTER, "ci-" + principals.suffix)
        with Submitter(submitter) as client:
            submitted = {
                client.submit(job_type, payload)
                for job_type, payload in [
                    ("io-heavy", {"io_ops": 20, "cpu_ms": 0}),
                    ("cpu-heavy", {"io_ops": 0, "cpu_ms": 10}),
                ]
                for _ in range(3)
            }
        completions = wait_for(
            lambda: (
                {
                    JobCompletion.from_bytes(r.value).job_id
                    for r in read_all(admin, principals.topics.name("completions"), timeout_s=5)
                }
                >= submitted
            ),
            120,
            what="every submitted job completed",
        )
        assert completions
        if worker.status()["dead_letters"]:
            letters = read_all(admin, principals.topics.name("dead-letters"), timeout_s=5)
            reasons = [DeadLetter.from_bytes(r.value).reason for r in letters]
            raise AssertionError(f"the worker dead-lettered: {reasons}")
    finally:
        worker.stop()
        os.killpg(host.pid, signal.SIGTERM)
        host.wait(timeout=60)
    outputs = {
        "worker": worker.log.read_text(errors="replace"),
        "host": host_log.read_text(errors="replace"),
        "acl provision": provisioned.stdout + provisioned.stderr,
    }
    for name, text in outputs.items():
        assert text, f"{name} printed nothing: the check below would be empty"
        for password in passwords:
            assert password not in text, f"a password appears in the {name}'s output"
    console.print(f"secured pipeline: {len(submitted)} jobs completed")
