"""`vmlb dom0`: a host's I/O telemetry (libvirt or an emulated host) into Kafka."""

from __future__ import annotations

import threading

import click

from pipeline.cli.common import KafkaSettings, kafka_options
from pipeline.topics import load_topics
from producers.runtime import die_with_parent, parse_duration_s, show_producer_logs, stop_on_signals


def _duration(_ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration_s(value, what=f"--{param.name}")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _vm_types(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    mapping = {}
    for value in values:
        vm_id, sep, job_type = value.partition("=")
        if not sep or not vm_id or not job_type:
            raise click.BadParameter(f"{value!r}: expected VM=JOB_TYPE", param_hint="--vm-type")
        mapping[vm_id] = job_type
    return mapping


@click.command("dom0")
@kafka_options
@click.option("--host-id", required=True, help="this physical host's id")
@click.option(
    "--source",
    required=True,
    help="libvirt:URI (qemu:///system, xen:///system, test:///default, test:///path/node.xml) "
    "or emulated:HOST:PORT / emulated:unix:/path",
)
@click.option(
    "--interval", default="1s", show_default=True, callback=_duration, help="sampling interval"
)
@click.option(
    "--io-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="this host's I/O limit in ops/s (else `vmlb calibrate` measures it)",
)
@click.option(
    "--vm-type",
    "vm_types",
    multiple=True,
    callback=_vm_types,
    metavar="VM=JOB_TYPE",
    help="the job type a VM serves (wins over domain metadata); repeatable",
)
@click.option(
    "--max-buffered",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="telemetry records kept while the broker is away; older ones are dropped and counted",
)
@click.option(
    "--per-vm-samples",
    is_flag=True,
    help="publish one IoSample per VM per interval (the first format) instead of HostSamples",
)
@click.option(
    "--vms-stopped-on-exit",
    is_flag=True,
    help="on exit, register this host's VMs as stopped (used by `vmlb host`)",
)
def dom0(
    settings: KafkaSettings,
    host_id: str,
    source: str,
    interval: float,
    io_limit: float | None,
    vm_types: dict[str, str],
    max_buffered: int,
    vms_stopped_on_exit: bool,
    per_vm_samples: bool,
) -> None:
    """Sample each VM's I/O counters every interval and publish HostSample (one per io-samples
    partition of the host's VMs), HostRegistration and VmRegistration events. Stops cleanly on
    SIGTERM/SIGINT."""
    from producers.telemetry.dom0 import Dom0
    from producers.telemetry.sampler import SamplerConfig
    from producers.telemetry.sources import open_source

    show_producer_logs()
    die_with_parent()
    config = SamplerConfig(
        host_id=host_id, interval_s=interval, io_limit_ops_per_s=io_limit, vm_types=vm_types
    )
    runner = Dom0(
        settings,
        load_topics(prefix=settings.topic_prefix),
        config,
        # Half an interval for a libvirt call, within 1-5 s: a stuck domain delays a tick by
        # about that (it used to stall the whole host 30 s), and a merely slow host answers.
        open_source(source, call_timeout_s=min(max(interval / 2, 1.0), 5.0)),
        max_buffered=max_buffered,
        vms_stopped_on_exit=vms_stopped_on_exit,
        per_vm_samples=per_vm_samples,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    runner.run(stop)
