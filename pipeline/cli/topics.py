"""`vmlb topics apply|list`: topics.yaml applied to the cluster."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from pipeline.cli.common import KafkaSettings, console, kafka_options
from pipeline.topics import DEFAULT_TOPICS_FILE, Action, apply_topics, load_topics

_STYLE = {
    Action.CREATED: "green",
    Action.WOULD_CREATE: "yellow",
    Action.UNCHANGED: "dim",
    Action.DRIFT: "bold red",
}


@click.group("topics")
def topics() -> None:
    """Topics as code: create what topics.yaml declares, report drift."""


@topics.command("apply")
@kafka_options
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_TOPICS_FILE,
    show_default=True,
)
@click.option("--dry-run", is_flag=True, help="say what would be created; change nothing")
@click.option(
    "--allow-fewer-replicas",
    is_flag=True,
    help="on a cluster with fewer brokers than a topic's replicas, create it with one replica "
    "per broker (min.insync.replicas lowered to match) instead of refusing",
)
def apply(settings: KafkaSettings, path: Path, dry_run: bool, allow_fewer_replicas: bool) -> None:
    """Create missing topics; report drift in partitions, replicas and configs. Safe to run again.

    Replicas: each topic's `replication_factor` in topics.yaml, or VMLB_REPLICATION_FACTOR for
    all of them; VMLB_MIN_INSYNC_REPLICAS sets every topic's `min.insync.replicas`.
    """
    declared = load_topics(path, prefix=settings.topic_prefix)
    reports = apply_topics(
        settings,
        declared.all_specs(),
        dry_run=dry_run,
        allow_fewer_replicas=allow_fewer_replicas,
    )
    table = Table("topic", "action", "details", title=f"topics on {settings.broker}")
    for report in reports:
        table.add_row(
            report.name, f"[{_STYLE[report.action]}]{report.action}[/]", "\n".join(report.details)
        )
    console.print(table)
    changed = [r for r in reports if r.action in (Action.CREATED, Action.WOULD_CREATE)]
    drifted = [r for r in reports if r.action is Action.DRIFT]
    if not changed and not drifted:
        console.print("nothing to do: every topic exists as declared")
    elif dry_run:
        console.print(f"dry run: {len(changed)} topic(s) would be created; nothing was changed")
    else:
        console.print(f"{len(changed)} topic(s) created")
    if drifted:
        console.print(
            f"[bold red]{len(drifted)} topic(s) differ from topics.yaml[/] (left as they are)"
        )
        raise SystemExit(3)
