"""`vmlb acl provision|list|revoke`: principals and their ACLs on a secured broker."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from pipeline.cli.common import KafkaSettings, console, kafka_options
from pipeline.errors import ConfigError
from pipeline.ops.security.grants import KAFKA_CANNOT_ENFORCE, Grant, Principal, Role


def default_credentials_dir() -> Path:
    return Path(
        os.environ.get(
            "VMLB_CREDENTIALS_DIR", Path.home() / ".local" / "state" / "vmlb" / "credentials"
        )
    )


def _principal_options(command):  # type: ignore[no-untyped-def]
    options = [
        click.option("--guest", "guests", multiple=True, metavar="VM_ID", help="a guest VM"),
        click.option("--dom0", "dom0s", multiple=True, metavar="HOST_ID", help="a host's Dom0"),
        click.option(
            "--submitter", "submitters", multiple=True, metavar="NAME", help="a job submitter"
        ),
        click.option(
            "--worker",
            "workers",
            multiple=True,
            metavar="APP_ID",
            help="a pipeline worker's app id (default app id: vmlb-pipeline)",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _principals(
    guests: tuple[str, ...],
    dom0s: tuple[str, ...],
    submitters: tuple[str, ...],
    workers: tuple[str, ...],
) -> list[Principal]:
    principals = [
        *(Principal(Role.GUEST, vm) for vm in guests),
        *(Principal(Role.DOM0, host) for host in dom0s),
        *(Principal(Role.SUBMITTER, name) for name in submitters),
        *(Principal(Role.WORKER, app_id) for app_id in workers),
    ]
    if not principals:
        raise ConfigError("name at least one principal: --guest, --dom0, --submitter or --worker")
    return principals


@click.group("acl")
def acl() -> None:
    """Principals (SCRAM users) per role and their ACLs, on a broker with an authorizer.

    Run these with a super user's credentials (`--credentials <broker dir>/admin.env` for
    `vmlb broker start --secure`). The README's "Security" section says what each role may do.
    """


@acl.command("provision")
@kafka_options
@_principal_options
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where each principal's credentials file is written, mode 0600 (default: "
    "$VMLB_CREDENTIALS_DIR or ~/.local/state/vmlb/credentials)",
)
@click.option("--rotate", is_flag=True, help="new passwords even for principals that have one")
@click.option(
    "--dry-run", is_flag=True, help="print the ACLs each principal would get; change nothing"
)
def provision_command(
    settings: KafkaSettings,
    guests: tuple[str, ...],
    dom0s: tuple[str, ...],
    submitters: tuple[str, ...],
    workers: tuple[str, ...],
    credentials_dir: Path | None,
    rotate: bool,
    dry_run: bool,
) -> None:
    """Create or update a principal per role and exactly the ACLs its role needs.

    Each principal's credentials (broker, topic prefix, user name, password) go to
    <credentials dir>/<role>-<id>.env; give that file to the component with --credentials.
    Idempotent: a principal keeps its password unless --rotate, and ends with exactly its
    role's ACLs under this topic prefix (ACLs it no longer needs are deleted).

    \b
    vmlb acl provision --credentials admin.env --worker vmlb-pipeline --submitter ci \\
        --dom0 h1 --guest h1-io --guest h1-cpu
    """
    from pipeline.ops.security.grants import grants_for
    from pipeline.ops.security.provision import provision
    from pipeline.topics import topics_of

    principals = _principals(guests, dom0s, submitters, workers)
    topics = topics_of(settings)
    if dry_run:
        rows = [
            (principal.kafka_principal, grant)
            for principal in sorted(set(principals))
            for grant in grants_for(principal, topics)
        ]
        console.print(_grants_table(rows))
        console.print("[bold]What these ACLs cannot enforce[/] (the pipeline's checks must):")
        for limit in KAFKA_CANNOT_ENFORCE:
            console.print(f"  - {limit}")
        return
    directory = credentials_dir or default_credentials_dir()
    results = provision(settings, topics, principals, directory, rotate=rotate)
    table = Table(
        "principal", "ACLs", "password", "credentials file", title=f"under {topics.prefix}"
    )
    for result in results:
        acls = f"{len(result.grants)}" + (f" ({result.revoked} revoked)" if result.revoked else "")
        password = "new" if result.new_password else "kept"
        table.add_row(result.principal.username, acls, password, str(result.credentials_file))
    console.print(table)


@acl.command("list")
@kafka_options
@click.option("--user", default=None, help="only this user's ACLs (e.g. guest-h1-io)")
def list_command(settings: KafkaSettings, user: str | None) -> None:
    """Every ALLOW ACL on topics and groups, by principal."""
    from pipeline.ops.security.provision import acls_of

    console.print(_grants_table(acls_of(settings, user)))


def _grants_table(rows: list[tuple[str, Grant]]) -> Table:
    """One row per principal and resource, its operations together."""
    operations: dict[tuple[str, str, str, str], list[str]] = {}
    for principal, grant in rows:
        key = (principal, grant.resource.value, grant.name, grant.pattern.value.lower())
        operations.setdefault(key, []).append(grant.operation.value)
    table = Table("principal", "resource", "name", "pattern", "operations")
    for key, ops in sorted(operations.items()):
        table.add_row(*key, ", ".join(sorted(ops)))
    return table


@acl.command("revoke")
@kafka_options
@_principal_options
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="also delete the principals' credentials files here",
)
def revoke_command(
    settings: KafkaSettings,
    guests: tuple[str, ...],
    dom0s: tuple[str, ...],
    submitters: tuple[str, ...],
    workers: tuple[str, ...],
    credentials_dir: Path | None,
) -> None:
    """Delete principals: their SCRAM credentials and every ACL they hold."""
    from pipeline.ops.security.credentials import credentials_path
    from pipeline.ops.security.provision import revoke

    principals = _principals(guests, dom0s, submitters, workers)
    deleted = revoke(settings, principals)
    for principal in principals:
        if credentials_dir is not None:
            credentials_path(credentials_dir, principal.username).unlink(missing_ok=True)
        console.print(f"{principal.username}: revoked ({deleted[principal.username]} ACLs deleted)")
