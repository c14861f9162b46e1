"""`vmlb guest`: the worker inside one VM that runs the jobs of its queue topic."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from pipeline.cli.common import KafkaSettings, kafka_options
from pipeline.topics import load_topics
from producers.runtime import (
    die_with_parent,
    parse_duration_s,
    require_identifier,
    show_producer_logs,
    stop_on_signals,
)


@click.command("guest")
@kafka_options
@click.option("--vm", "vm_id", required=True, help="the VM this worker runs in (its queue topic)")
@click.option(
    "--host-id", default=None, help="the host it runs on (default: as the dispatcher saw it)"
)
@click.option(
    "--handler",
    required=True,
    help="io-heavy, cpu-heavy, mixed, or MODULE:FUNCTION taking (job, io) -> dict | None",
)
@click.option(
    "--io-channel",
    default=None,
    help="the emulated host's I/O channel (HOST:PORT or unix:/path); default: real disk I/O in --state-dir",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where completed job ids are kept (default: .vmlb/guest/<vm>)",
)
@click.option(
    "--grace",
    default="30s",
    show_default=True,
    help="on SIGTERM, how long the job in hand may take before it is released uncommitted",
)
def guest(
    settings: KafkaSettings,
    vm_id: str,
    host_id: str | None,
    handler: str,
    io_channel: str | None,
    state_dir: Path | None,
    grace: str,
) -> None:
    """Consume this VM's queue, run each job, publish its JobCompletion, then commit (at-least-once,
    deduplicated by job id). Malformed messages go to the dead-letter topic."""
    from producers.emulated.client import TcpIoChannel
    from producers.guest.completed import CompletedJobs
    from producers.guest.handlers import load_handler
    from producers.guest.io import IoChannel, LocalDiskIoChannel
    from producers.guest.worker import GuestWorker

    show_producer_logs()
    die_with_parent()
    require_identifier(vm_id, "--vm")
    if host_id is not None:
        require_identifier(host_id, "--host-id")
    try:
        grace_s = parse_duration_s(grace, what="--grace")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    state_dir = state_dir or Path(".vmlb/guest") / vm_id
    run_handler = load_handler(handler)
    io: IoChannel = TcpIoChannel(io_channel, vm_id) if io_channel else LocalDiskIoChannel(state_dir)
    completed = CompletedJobs(state_dir / "completed")
    worker = GuestWorker(
        settings,
        load_topics(prefix=settings.topic_prefix),
        vm_id,
        run_handler,
        io,
        completed,
        host_id=host_id,
        grace_s=grace_s,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        worker.run(stop)
    finally:
        completed.close()
        io.close()
