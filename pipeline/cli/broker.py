"""`vmlb broker start|stop|status`: the local KRaft broker."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.common import console
from pipeline.ops.broker.local import DEFAULT_PORT, LocalCluster


def _data_dir_option(command):  # type: ignore[no-untyped-def]
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="where the broker keeps its data, logs and pid (default: $VMLB_BROKER_DIR or ~/.local/state/vmlb/broker)",
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
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="first client port")
@click.option(
    "--nodes", type=click.Choice(["1", "3"]), default="1", show_default=True, help="cluster size"
)
def start(data_dir: Path | None, port: int, nodes: str) -> None:
    """Install Kafka if needed, start it and wait until it accepts clients."""
    cluster = LocalCluster(data_dir, port=port, nodes=int(nodes))
    if cluster.is_running():
        console.print(
            f"Kafka is already running at [bold]{cluster.bootstrap}[/] ({cluster.data_dir})"
        )
        return
    with console.status("starting Kafka (the first start downloads it from Maven Central)..."):
        bootstrap = cluster.start()
    console.print(f"Kafka is up: bootstrap servers [bold]{bootstrap}[/]")
    console.print(f"  data and logs: {cluster.data_dir}")
    console.print(f"  use it with:   export VMLB_BROKER={bootstrap}")


@broker.command("stop")
@_data_dir_option
def stop(data_dir: Path | None) -> None:
    """Stop the local broker (every node) and wait until its processes are gone."""
    cluster = LocalCluster(data_dir)
    stopped = cluster.stop()
    if stopped:
        console.print(f"Kafka stopped (pids {', '.join(map(str, stopped))})")
    else:
        console.print("Kafka was not running")


@broker.command("status")
@_data_dir_option
def status(data_dir: Path | None) -> None:
    """Say whether the local broker runs, and where. Exit 1 if any node is down."""
    cluster = LocalCluster(data_dir)
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
