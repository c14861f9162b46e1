"""`vmlb broker start|stop|status`: the local KRaft broker."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.common import console
from pipeline.ops.broker.local import DEFAULT_PORT, DEFAULT_SECURE_PORT, LocalCluster


def _data_dir_option(command):  # type: ignore[no-untyped-def]
    command = click.option(
        "--secure",
        is_flag=True,
        help="the secured broker (SASL/SCRAM, ACLs): its own data directory and ports",
    )(command)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="where the broker keeps its data, logs and pid (default: $VMLB_BROKER_DIR or "
        "~/.local/state/vmlb/broker, with '-secure' appended for --secure)",
    )(command)


@click.group("broker")
def broker() -> None:
    """Run a real Apache Kafka broker (KRaft) on this machine, installed from Maven Central."""


@broker.command("install")
@click.option("--quiet", is_flag=True, help="one progress line when downloading, else nothing")
def install_command(quiet: bool) -> None:
    """Download the pinned Kafka release's jars from Maven Central into the cache (once)."""
    from pipeline.ops.broker import install

    if quiet:  # `make setup`: say so only when there is something to wait for
        if not install.installed():
            console.print(f"setup: Apache Kafka {install.KAFKA_VERSION}'s jars from Maven Central")
            install.install()
        return
    with console.status(f"resolving Kafka {install.KAFKA_VERSION} from Maven Central..."):
        libs = install.install()
    console.print(f"Kafka {install.KAFKA_VERSION} jars are in {libs}")


@broker.command("start")
@_data_dir_option
@click.option(
    "--port",
    type=int,
    default=None,
    help=f"first client port (default {DEFAULT_PORT}, or {DEFAULT_SECURE_PORT} with --secure)",
)
@click.option(
    "--nodes", type=click.Choice(["1", "3"]), default="1", show_default=True, help="cluster size"
)
def start(data_dir: Path | None, secure: bool, port: int | None, nodes: str) -> None:
    """Install Kafka if needed, start it and wait until it accepts clients.

    With --secure, clients must authenticate (SASL/SCRAM-SHA-512) and may do only what ACLs
    allow; the super user's credentials are written to <data dir>/admin.env (mode 0600), and
    `vmlb acl provision --credentials <that file>` creates the other principals.
    """
    cluster = LocalCluster(data_dir, port=port, nodes=int(nodes), secure=secure or None)
    if cluster.is_running():
        console.print(
            f"Kafka is already running at [bold]{cluster.bootstrap}[/] ({cluster.data_dir})"
        )
        _print_usage(cluster)
        return
    with console.status("starting Kafka (the first start downloads it from Maven Central)..."):
        bootstrap = cluster.start()
    console.print(
        f"Kafka is up{' (secured)' if cluster.secure else ''}: bootstrap servers [bold]{bootstrap}[/]"
    )
    console.print(f"  data and logs: {cluster.data_dir}")
    _print_usage(cluster)


def _print_usage(cluster: LocalCluster) -> None:
    if len(cluster.nodes) > 1:
        # Without these the project's topics would get topics.yaml's single replica.
        replicas = len(cluster.nodes)
        console.print(
            f"  replicate with: export VMLB_REPLICATION_FACTOR={replicas} "
            f"VMLB_MIN_INSYNC_REPLICAS={replicas - 1}"
        )
    if not cluster.secure:
        console.print(f"  use it with:   export VMLB_BROKER={cluster.bootstrap}")
        return
    # The path of the credentials, never the password.
    console.print(f"  super user:    admin, credentials in {cluster.admin_credentials_file}")
    console.print(f"  use it with:   export VMLB_CREDENTIALS={cluster.admin_credentials_file}")
    console.print("  principals:    vmlb acl provision --guest VM --dom0 HOST ... (see --help)")


@broker.command("stop")
@_data_dir_option
def stop(data_dir: Path | None, secure: bool) -> None:
    """Stop the local broker (every node) and wait until its processes are gone."""
    cluster = LocalCluster(data_dir or _default_dir(secure))
    stopped = cluster.stop()
    if stopped:
        console.print(f"Kafka stopped (pids {', '.join(map(str, stopped))})")
    else:
        console.print("Kafka was not running")


@broker.command("status")
@_data_dir_option
def status(data_dir: Path | None, secure: bool) -> None:
    """Say whether the local broker runs, and where. Exit 1 if any node is down."""
    cluster = LocalCluster(data_dir or _default_dir(secure))
    statuses = cluster.status()
    for node_status in statuses:
        state = "[green]running[/]" if node_status.running else "[red]stopped[/]"
        pid = f" pid {node_status.pid}" if node_status.running else ""
        console.print(
            f"node {node_status.node.node_id}: {state} at {node_status.node.address}{pid}"
        )
    console.print(f"data and logs: {cluster.data_dir}")
    if not all(s.running for s in statuses):
        raise SystemExit(1)


def _default_dir(secure: bool) -> Path:
    from pipeline.ops.broker.local import default_data_dir

    return default_data_dir(secure)
