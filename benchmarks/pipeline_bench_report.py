"""Broker choice and the rich table of `vmlb bench pipeline` (the run is in pipeline_bench)."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.settings import KafkaSettings, load_kafka_settings


def kafka_for(broker: str | None, console: Console) -> KafkaSettings:
    """--broker, else VMLB_BROKER, else what listens on 127.0.0.1:9092, else the local broker
    (started), like the demo."""
    if broker:
        return load_kafka_settings(broker=broker)
    if os.environ.get("VMLB_BROKER"):
        return load_kafka_settings()
    from pipeline.ops.broker.local import DEFAULT_HOST, DEFAULT_PORT, LocalCluster
    from pipeline.ops.ports import port_free

    if not port_free(DEFAULT_PORT):
        # Something already serves the default port (e.g. a broker started another way).
        return load_kafka_settings(broker=f"{DEFAULT_HOST}:{DEFAULT_PORT}")
    cluster = LocalCluster()
    with console.status("starting the local Kafka broker..."):
        cluster.start()  # left running for the next benchmark: `vmlb broker stop` stops it
    console.print(f"Kafka at [bold]{cluster.bootstrap}[/] (stop it with `vmlb broker stop`)")
    return cluster.settings()


def _met(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def _telemetry_rows(result: dict[str, Any], table: Table) -> None:
    goal = result["goals"]["telemetry_samples_per_s_min"]
    for form, report in result["telemetry"].items():
        tel = report["telemetry_samples_per_s"]
        table.add_row(
            f"telemetry as {form} (vm_stats), VM samples/s",
            f"{tel:,.0f} ({report['telemetry_records']:,} records "
            f"for {report['telemetry_samples']:,} samples)",
            f">= {goal:,.0f}" if form == "host-sample" else "",
            _met(tel >= goal) if form == "host-sample" else "",
        )
        table.add_row(
            f"telemetry as {form} / Faust floor (same backlog)",
            f"{report['telemetry_vs_faust_noop']:.2f}x "
            f"(floor {report['faust_noop_vm_samples_per_s']:,.0f} VM samples/s)",
            "",
            "",
        )
    if "telemetry_host_vs_io_sample" in result:
        table.add_row(
            "telemetry HostSample / IoSample",
            f"{result['telemetry_host_vs_io_sample']:.2f}x",
            "",
            "",
        )


def print_table(result: dict[str, Any], console: Console) -> None:
    goals = result["goals"]
    table = Table(title="vmlb bench pipeline (same run, same broker)")
    for column in ("measure", "value", "goal", "met"):
        table.add_column(column)
    if "dispatch_per_s" not in result:  # --telemetry-only
        _telemetry_rows(result, table)
        console.print(table)
        return
    ratio = result["dispatch_vs_passthrough"]
    met = _met

    table.add_row("pass-through (aiokafka), msgs/s", f"{result['passthrough_per_s']:,.0f}", "", "")
    table.add_row(
        "Faust floor (a do-nothing agent), msgs/s",
        f"{result['faust_noop_jobs_per_s']:,.0f}",
        "",
        "",
    )
    table.add_row("dispatch (worker), jobs/s", f"{result['dispatch_per_s']:,.0f}", "", "")
    table.add_row("dispatch / Faust floor", f"{result['dispatch_vs_faust_noop']:.2g}x", "", "")
    table.add_row(
        "dispatch / pass-through",
        f"{ratio:.2g}x",
        f">= {goals['dispatch_vs_passthrough_min']}x",
        met(ratio >= goals["dispatch_vs_passthrough_min"]),
    )
    for row in result["latency"]:
        table.add_row(
            f"submit-to-queue at {row['rate_per_s']:g}/s (offered {row['offered_per_s']:.0f})",
            f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms",
            f"p99 <= {goals['p99_submit_to_queue_ms_max_at_1000_per_s']:g} ms at 1000/s",
            met(row["p99_ms"] <= goals["p99_submit_to_queue_ms_max_at_1000_per_s"])
            if row["rate_per_s"] >= 1000
            else "",
        )
    _telemetry_rows(result, table)
    table.add_row(
        f"worker RSS, 10 vs {result['registered_vms']} VMs",
        f"{result['rss_mib_10_vms']:.0f} / {result['rss_mib_many_vms']:.0f} MiB",
        "",
        "",
    )
    table.add_row("RSS per 1,000 VMs", f"{result['rss_mib_per_1000_vms']:.1f} MiB", "", "")
    table.add_row("jobs lost", str(result["jobs_lost"]), "0", met(result["jobs_lost"] == 0))
    console.print(table)
