"""`vmlb worker`: run the Faust pipeline (aggregation tables and the dispatcher)."""

from __future__ import annotations

import click

from pipeline.cli.common import KafkaSettings, console, kafka_options
from pipeline.settings import load_pipeline_settings
from pipeline.topics import apply_topics, worker_topic_specs


@click.command("worker")
@kafka_options
@click.option(
    "--policy",
    default=None,
    help="dispatch policy: io-aware (default), paper, round-robin, random, least-outstanding, guest-util",
)
@click.option(
    "--web-port", type=int, default=None, help="HTTP port of the queries and metrics (default 6066)"
)
@click.option("--data-dir", default=None, help="where RocksDB tables live (default .vmlb/worker)")
@click.option(
    "--app-id", default=None, help="Faust app id; workers with the same id share the work"
)
@click.option("-l", "--loglevel", default="info", show_default=True)
def worker(
    settings: KafkaSettings,
    policy: str | None,
    web_port: int | None,
    data_dir: str | None,
    app_id: str | None,
    loglevel: str,
) -> None:
    """Run one pipeline worker. Start several with the same --app-id to share partitions.

    Every setting also reads the environment (VMLB_POLICY, VMLB_RATE_WINDOW_S, VMLB_STALE_AFTER_S,
    ...; see pipeline/settings.py for all of them and their defaults).
    """
    from pipeline.edge.faust_compat import quiet_worker
    from pipeline.worker import gc_policy, kafka_outage
    from pipeline.worker.app import create_app

    # Through a broker outage: reconnects back off, each kind of client error logged once per 10 s.
    kafka_outage.install()

    pipeline_settings = load_pipeline_settings(
        policy=policy, web_port=web_port, data_dir=data_dir, app_id=app_id
    )
    pipeline = create_app(settings, pipeline_settings)
    # Create the tables' changelogs before Faust starts: when Faust creates them itself while its
    # consumer subscribes, the consumer's metadata can miss them, and every agent writing a table
    # then crashes with PartitionsMismatch for the life of the process (seen in CI). Its leader
    # topic too, so that it gets VMLB_MIN_INSYNC_REPLICAS (Faust gives it no config).
    apply_topics(settings, worker_topic_specs(pipeline_settings.app_id, settings, pipeline.topics))
    console.print(
        f"worker {pipeline_settings.app_id}: policy {pipeline.dispatcher.policy.name}, "
        f"queries on http://{pipeline_settings.web_host}:{pipeline_settings.web_port}/hosts"
    )
    faust_worker = quiet_worker(pipeline.app, loglevel)
    # Last before it runs: what exists now is frozen out of every collection.
    gc_policy.tune(pipeline_settings.gc_young_threshold)
    faust_worker.execute_from_commandline()
