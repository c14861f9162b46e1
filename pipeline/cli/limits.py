"""`vmlb calibrate` (Table 1 measured) and `vmlb limit` (operator overrides)."""

from __future__ import annotations

import time

import click
from kafka import KafkaProducer
from rich.table import Table

from pipeline.cli.common import KafkaSettings, console, err_console, kafka_options
from pipeline.errors import EventError, VmlbError
from pipeline.events import (
    IoSample,
    LimitField,
    LimitScope,
    LimitSetting,
    LimitSource,
    read_io_samples,
)
from pipeline.stats.calibrate import calibrate as calibrate_samples
from pipeline.topics import topics_of
from pipeline.topics.reader import read_topics


def _publish(settings: KafkaSettings, settings_out: list[LimitSetting]) -> None:
    producer = KafkaProducer(acks="all", **settings.to_kafka_python())
    try:
        for setting in settings_out:
            producer.send(
                topics_of(settings).name("limits"), key=setting.key(), value=setting.to_bytes()
            )
        producer.flush(timeout=30)
    finally:
        producer.close()


def _read_samples(
    settings: KafkaSettings, duration_s: float, since_s: float | None
) -> list[IoSample]:
    """The I/O samples of the last `since_s` seconds, or of the next `duration_s` seconds."""
    if since_s is None:
        started = time.time()
        time.sleep(duration_s)  # the hosts are driven meanwhile; then read what they reported
        since_s, now = duration_s, started + duration_s
    else:
        now = time.time()
    records = read_topics(
        settings,
        [topics_of(settings).name("io-samples")],
        since_s=since_s,
        now=now,
        timeout_s=60.0,
        must_exist=True,
    )
    samples: list[IoSample] = []
    skipped = 0
    for record in records:
        try:
            samples.extend(read_io_samples(record.value))  # an IoSample or a HostSample
        except EventError:
            skipped += 1  # the pipeline dead-letters these; calibration ignores them
    if skipped:
        err_console.print(f"ignored {skipped} malformed I/O samples")
    return samples


@click.command("calibrate")
@kafka_options
@click.option(
    "--host", "hosts", multiple=True, help="calibrate only this host (repeatable); default all seen"
)
@click.option(
    "--duration",
    "duration_s",
    type=float,
    default=30.0,
    show_default=True,
    help="seconds of live telemetry to collect",
)
@click.option(
    "--since",
    "since_s",
    type=float,
    default=None,
    help="use the last S seconds already in the topic instead of waiting",
)
@click.option("--percentile", "p", type=float, default=95.0, show_default=True)
@click.option("--headroom", type=float, default=0.9, show_default=True)
@click.option("--dry-run", is_flag=True, help="print the limits; publish nothing")
def calibrate(
    settings: KafkaSettings,
    hosts: tuple[str, ...],
    duration_s: float,
    since_s: float | None,
    p: float,
    headroom: float,
    dry_run: bool,
) -> None:
    """Measure each host's I/O limit (the paper's Table 1) from its VMs' summed I/O.

    Drive the hosts to saturation while this runs: limit = p-th percentile of the summed VM I/O
    rate x headroom. Results go to the `limits` topic as calibrated values; a configured
    (`vmlb dom0 --io-limit`) or operator (`vmlb limit set`) limit still wins.
    """
    with console.status(f"collecting I/O samples for {since_s or duration_s:g}s..."):
        samples = _read_samples(settings, duration_s, since_s)
    if hosts:
        samples = [s for s in samples if s.host_id in hosts]
    try:
        results = calibrate_samples(samples, p=p, headroom=headroom)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not results:
        raise VmlbError("no I/O samples arrived; is `vmlb dom0` running for these hosts?")
    table = Table(
        "host", "limit ops/s", "peak ops/s", "intervals", "how", title="calibration (Table 1)"
    )
    out = []
    for result in results.values():
        limit = f"{result.limit_ops_per_s:.0f}" if result.limit_ops_per_s else "-"
        table.add_row(
            result.host_id,
            limit,
            f"{result.peak_ops_per_s:.0f}",
            str(result.intervals),
            result.detail,
        )
        if result.limit_ops_per_s:
            out.append(
                LimitSetting(
                    scope=LimitScope.HOST,
                    target_id=result.host_id,
                    field=LimitField.IO_LIMIT,
                    source=LimitSource.CALIBRATED,
                    value=result.limit_ops_per_s,
                    set_at=time.time(),
                    detail=result.detail,
                )
            )
    console.print(table)
    if dry_run:
        console.print("dry run: nothing published")
        return
    _publish(settings, out)
    console.print(
        f"published {len(out)} calibrated limit(s) to {topics_of(settings).name('limits')}"
    )


@click.group("limit")
def limit() -> None:
    """Operator overrides of a host's I/O limit or a VM's io_per_job (they win over measurements)."""


def _target(
    host: str | None, vm: str | None, io_limit: float | None, io_per_job: float | None
) -> tuple[LimitScope, str, LimitField]:
    if (host is None) == (vm is None):
        raise click.UsageError("give exactly one of --host or --vm")
    if host is not None:
        if io_per_job is not None:
            raise click.UsageError("--io-per-job applies to a --vm")
        return LimitScope.HOST, host, LimitField.IO_LIMIT
    if io_limit is not None:
        raise click.UsageError("--io-limit applies to a --host")
    return LimitScope.VM, vm or "", LimitField.IO_PER_JOB


@limit.command("set")
@kafka_options
@click.option("--host", default=None)
@click.option("--vm", default=None)
@click.option(
    "--io-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="host I/O limit, ops/s",
)
@click.option(
    "--io-per-job",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="VM I/O per job, ops",
)
def limit_set(
    settings: KafkaSettings,
    host: str | None,
    vm: str | None,
    io_limit: float | None,
    io_per_job: float | None,
) -> None:
    """Set an override, e.g. `vmlb limit set --host h1 --io-limit 5000`."""
    scope, target, field = _target(host, vm, io_limit, io_per_job)
    value = io_limit if scope is LimitScope.HOST else io_per_job
    if value is None:
        raise click.UsageError("give --io-limit (with --host) or --io-per-job (with --vm)")
    setting = LimitSetting(
        scope=scope,
        target_id=target,
        field=field,
        source=LimitSource.OPERATOR,
        value=value,
        set_at=time.time(),
    )
    _publish(settings, [setting])
    console.print(f"{scope} {target}: {field} = {value:g} (operator override)")


@limit.command("clear")
@kafka_options
@click.option("--host", default=None)
@click.option("--vm", default=None)
def limit_clear(settings: KafkaSettings, host: str | None, vm: str | None) -> None:
    """Remove an operator override; measurements and configuration apply again."""
    scope, target, field = _target(host, vm, None, None)
    setting = LimitSetting(
        scope=scope,
        target_id=target,
        field=field,
        source=LimitSource.OPERATOR,
        value=None,
        set_at=time.time(),
    )
    _publish(settings, [setting])
    console.print(f"{scope} {target}: {field} override cleared")
