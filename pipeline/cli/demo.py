"""`vmlb demo`: the README's first command."""

from __future__ import annotations

import json

import click
from rich.table import Table

from pipeline.cli.common import console


@click.command("demo")
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=10),
    default=None,
    help="seconds to run (default: until Ctrl-C)",
)
@click.option("--policy", default="io-aware", show_default=True, help="dispatch policy")
@click.option(
    "--web-port",
    type=int,
    default=6066,
    show_default=True,
    help="the worker's web view (another free port if taken)",
)
@click.option("--no-live", is_flag=True, help="no live terminal view (for logs and CI)")
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the job generator")
@click.option(
    "--keep-topics", is_flag=True, help="keep this run's topics for inspection (deleted by default)"
)
@click.option(
    "--secure",
    is_flag=True,
    help="on the secured broker (`vmlb broker start --secure`, started if needed), each "
    "process as its own principal with only its role's ACLs",
)
def demo(
    duration_s: float | None,
    policy: str,
    web_port: int,
    no_live: bool,
    seed: int,
    keep_topics: bool,
    secure: bool,
) -> None:
    """Run the whole system here: Kafka, the pipeline worker, four emulated hosts with three guest
    VMs each, their Dom0 producers, and a job generator ramping past the fleet's I/O capacity.

    Watch the dispatcher steer jobs away from saturated hosts, and make them wait when every host
    is full. At the end, every process is stopped and a summary printed; with --duration its last
    line is the summary as one JSON object.
    """
    from pipeline.ops.demo.run import DemoOptions, run_demo
    from pipeline.policy.registry import build_policy

    build_policy(policy)  # an unknown name fails now, naming the valid ones
    summary = run_demo(
        DemoOptions(
            duration_s,
            policy,
            web_port,
            live=not no_live,
            seed=seed,
            keep_topics=keep_topics,
            secure=secure,
        ),
        console,
    )
    table = Table("", "", title="demo summary")
    for key in (
        "submitted",
        "completed",
        "waiting",
        "in_queue",
        "dead_lettered",
        "lost",
        "p50_response_s",
        "p99_response_s",
        "p99_response_with_unfinished_s",
        "overload_s",
        "overload_with_headroom_elsewhere_s",
        "served_over_limit_s",
        "lost_goodput_pct",
    ):
        table.add_row(key, str(summary.get(key)))
    for host, seconds in summary["overload_s_by_host"].items():
        table.add_row(f"  above limit: {host}", f"{seconds} s")
    console.print(table)
    click.echo(json.dumps(summary, sort_keys=True))
    if summary["lost"]:
        raise SystemExit(1)
