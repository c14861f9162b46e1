"""`vmlb demo --secure`: a principal for each process the demo starts, and its credentials.

The worker, each emulated host's Dom0 and guests, and the job generator are provisioned with
`vmlb acl provision`'s roles; each child finds its credentials file through VMLB_CREDENTIALS
(and `vmlb host --credentials-dir` for its guests and Dom0).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from pipeline.ops.demo.fleet import FLEET
from pipeline.ops.security.grants import Principal, Role
from pipeline.ops.security.provision import provision, revoke
from pipeline.settings import KafkaSettings, load_kafka_settings
from pipeline.topics import Topics


def revoke_demo(admin: KafkaSettings, app_id: str) -> None:
    """This run's worker principal goes with its topics (the others are reused next run)."""
    revoke(admin, [Principal(Role.WORKER, app_id)])


def provision_demo(
    admin: KafkaSettings, topics: Topics, app_id: str, run_dir: Path, console: Console
) -> tuple[dict[str, dict[str, str]], KafkaSettings]:
    """A principal for the worker, each host's Dom0 and guest, and the job generator.

    Returns each child's environment addition (its credentials file, by child name) and the
    generator's settings.
    """
    principals = [Principal(Role.WORKER, app_id), Principal(Role.SUBMITTER, "demo")]
    for host in FLEET:
        principals.append(Principal(Role.DOM0, host.host_id))
        principals += [Principal(Role.GUEST, vm_id) for vm_id, _ in host.vms]
    provisioned = provision(admin, topics, principals, run_dir / "credentials")
    files = {result.principal: str(result.credentials_file) for result in provisioned}
    console.print(
        f"secured: {len(provisioned)} principals provisioned, credentials in {run_dir}/credentials/"
    )
    environments = {"worker": {"VMLB_CREDENTIALS": files[Principal(Role.WORKER, app_id)]}}
    for host in FLEET:
        # `vmlb host` connects as nothing itself; its Dom0 and guests get their own files.
        environments[host.host_id] = {"VMLB_CREDENTIALS": files[Principal(Role.DOM0, host.host_id)]}
    submitter = load_kafka_settings(credentials_file=files[Principal(Role.SUBMITTER, "demo")])
    return environments, submitter
