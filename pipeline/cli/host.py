"""`vmlb host`: an emulated host (I/O backend, guest workers, Dom0) from one command, and an
operator's `vmlb host cordon|drain|uncordon HOST` (`pipeline.cli.host_admin`)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import KafkaSettings, kafka_options


@click.group("host", invoke_without_command=True)
@kafka_options
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="a YAML host config (flags below override its keys)",
)
@click.option("--id", "host_id", default=None, help="the host's id")
@click.option(
    "--io-capacity",
    "io_capacity",
    type=float,
    default=None,
    help="ops/s the host's shared I/O channel serves",
)
@click.option(
    "--vm",
    "vms",
    multiple=True,
    metavar="VM:JOB_TYPE[=MODULE:FUNCTION][@OPS_PER_S]",
    help="a guest of this host, the job type it serves and its device's ops/s cap; repeatable",
)
@click.option(
    "--collapse",
    type=float,
    default=None,
    help="goodput collapse past capacity (default 0.5, the simulator's)",
)
@click.option(
    "--listen",
    default=None,
    help="HOST:PORT or unix:/path for the I/O channel (default 127.0.0.1:0)",
)
@click.option("--no-dom0", is_flag=True, help="do not run this host's `vmlb dom0`")
@click.option(
    "--dom0-interval", type=float, default=None, help="Dom0 sampling interval, seconds (default 1)"
)
@click.option(
    "--io-limit", type=float, default=None, help="I/O limit Dom0 announces, ops/s (default: none)"
)
@click.option("--state-dir", default=None, help="guests' state (default .vmlb/hosts/<id>)")
@click.option(
    "--guest-grace",
    type=float,
    default=None,
    help="seconds a stopping guest may finish its job (default 10)",
)
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="secured broker: each guest connects with <dir>/guest-<vm>.env, Dom0 with "
    "<dir>/dom0-<host>.env (files from `vmlb acl provision`)",
)
@click.pass_context
def host(
    ctx: click.Context,
    settings: KafkaSettings,
    config_path: Path | None,
    host_id: str | None,
    io_capacity: float | None,
    vms: tuple[str, ...],
    collapse: float | None,
    listen: str | None,
    no_dom0: bool,
    dom0_interval: float | None,
    io_limit: float | None,
    state_dir: str | None,
    guest_grace: float | None,
    credentials_dir: Path | None,
) -> None:
    """Run an emulated host: a shared I/O channel of --io-capacity ops/s, its guests as `vmlb guest`
    processes doing their I/O through it, and its `vmlb dom0`. Stops cleanly on SIGTERM/SIGINT.
    Or, with a command, take a host (any host, emulated or real) out of service and back.

    \b
    vmlb host --id h1 --io-capacity 2000 --vm h1-io:io-heavy@900 --vm h1-cpu:cpu-heavy
    vmlb host --config hosts/h1.yaml
    vmlb host drain host-a --reason "kernel update" --deadline 10m
    """
    if ctx.invoked_subcommand is not None:
        return
    from producers.emulated.config import build_host_config, load_host_config, parse_vm_flag
    from producers.emulated.host import EmulatedHost
    from producers.runtime import show_producer_logs

    show_producer_logs()
    overrides: dict[str, Any] = {
        "host_id": host_id,
        "io_capacity_ops_per_s": io_capacity,
        "vms": [parse_vm_flag(v) for v in vms] or None,
        "collapse": collapse,
        "listen": listen,
        "dom0": False if no_dom0 else None,
        "dom0_interval_s": dom0_interval,
        "io_limit_ops_per_s": io_limit,
        "state_dir": state_dir,
        "guest_grace_s": guest_grace,
    }
    if config_path is not None:
        config = load_host_config(config_path, overrides)
    else:
        config = build_host_config({k: v for k, v in overrides.items() if v is not None})
    verbose = ctx.find_root().params.get("verbose", 0)
    guest_credentials, dom0_credentials = {}, None
    if credentials_dir is not None:
        from pipeline.ops.security.credentials import principal_credentials

        guest_credentials = {
            vm.vm_id: principal_credentials(credentials_dir, "guest", vm.vm_id) for vm in config.vms
        }
        dom0_credentials = principal_credentials(credentials_dir, "dom0", config.host_id)
    emulated = EmulatedHost(
        config,
        settings,
        verbose=verbose,
        guest_credentials=guest_credentials,
        dom0_credentials=dom0_credentials,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await emulated.run(stop)

    asyncio.run(main())


from pipeline.cli.host_admin import cordon, drain, uncordon  # noqa: E402

host.add_command(cordon)
host.add_command(drain)
host.add_command(uncordon)
