"""A running worker's HTTP queries as a client reads them, and the fleet as a terminal table.

Used by `vmlb status` and the demo's live view.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from rich.markup import escape
from rich.table import Table

from pipeline.errors import VmlbError


def fetch(base_url: str, path: str, timeout_s: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=timeout_s) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, OSError) as exc:
        raise VmlbError(
            f"no worker answers at {base_url} ({exc}); start one with `vmlb worker`"
        ) from None


def bar(value: float, limit: float | None, width: int = 20) -> str:
    """A text bar of value against limit: green under, red over."""
    if not limit:
        return "[dim]no limit yet[/]"
    filled = min(width, round(width * value / limit))
    color = "red" if value >= limit else "yellow" if value >= 0.8 * limit else "green"
    return f"[{color}]{'█' * filled}[/]{'░' * (width - filled)} {100 * value / limit:3.0f}%"


def hosts_table(hosts: list[dict[str, Any]]) -> Table:
    table = Table(
        "host",
        "I/O against limit",
        "total ops/s",
        "limit",
        "headroom",
        "eligible",
        "VMs (load/s, io/job, queue)",
    )
    for host in hosts:
        vms = "\n".join(
            f"{vm['vm_id']} [{vm['job_type']}] {vm['load_jobs_per_s']:.1f}/s, "
            f"{vm['io_per_job']:.0f} io/job, {vm['outstanding_jobs']} queued"
            if vm["io_per_job"] is not None
            else f"{vm['vm_id']} [{vm['job_type']}] {vm['load_jobs_per_s']:.1f}/s, io/job ?, {vm['outstanding_jobs']} queued"
            for vm in host["vms"]
        )
        headroom = host["headroom_ops_per_s"]
        path = host.get("telemetry_path")  # how its Dom0 reads the counters
        table.add_row(
            host["host_id"] + (f"\n[dim]{escape(path)}[/]" if path else ""),
            bar(host["projected_io_ops_per_s"], host["limit_ops_per_s"]),
            f"{host['projected_io_ops_per_s']:.0f}",
            f"{host['limit_ops_per_s']:.0f}" if host["limit_ops_per_s"] else "-",
            f"{headroom:.0f}" if headroom is not None else "-",
            "[green]yes[/]" if host["eligible"] else f"[red]no[/] ({host['reason']})",
            vms,
        )
    return table
