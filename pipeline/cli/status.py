"""`vmlb status`: the fleet as the running worker sees it, from its HTTP queries."""

from __future__ import annotations

import json

import click

from pipeline.cli.common import console
from pipeline.worker.queries import fetch, hosts_table


@click.command("status")
@click.option(
    "--url", default="http://127.0.0.1:6066", show_default=True, help="a worker's web address"
)
@click.option(
    "--json", "as_json", is_flag=True, help="print the worker's answers as one JSON object"
)
def status(url: str, as_json: bool) -> None:
    """Hosts, their I/O against limits, eligibility and VMs, from the running worker."""
    summary = fetch(url, "/status")
    hosts = fetch(url, "/hosts")["hosts"]
    if as_json:
        click.echo(json.dumps({"status": summary, "hosts": hosts}, indent=2))
        return
    console.print(
        f"policy [bold]{summary['policy']}[/], {summary['hosts']} hosts, {summary['vms']} VMs, "
        f"{summary['waiting']} jobs waiting"
    )
    console.print(hosts_table(hosts))
