"""Entry point of the `vmlb` command."""

from __future__ import annotations

import logging

import click

from pipeline import __version__
from pipeline.cli.acl import acl
from pipeline.cli.bench import bench
from pipeline.cli.broker import broker
from pipeline.cli.common import run_cli
from pipeline.cli.demo import demo
from pipeline.cli.dom0 import dom0
from pipeline.cli.guest import guest
from pipeline.cli.host import host
from pipeline.cli.jobs import job
from pipeline.cli.limits import calibrate, limit
from pipeline.cli.status import status
from pipeline.cli.submit import submit
from pipeline.cli.topics import topics
from pipeline.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmlb")
@click.option("-v", "--verbose", count=True, help="more logging (-vv for debug)")
def cli(verbose: int) -> None:
    """vmlb: an I/O-aware job dispatcher for virtual machines, on Kafka and Faust."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if verbose == 0:
        # kafka-python reports routine reconnects and slow polls as errors; the commands say
        # what went wrong in their own words. -v shows them.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


cli.add_command(broker)
cli.add_command(acl)
cli.add_command(bench)
cli.add_command(topics)
cli.add_command(dom0)
cli.add_command(host)
cli.add_command(guest)
cli.add_command(submit)
cli.add_command(job)
cli.add_command(worker)
cli.add_command(calibrate)
cli.add_command(limit)
cli.add_command(status)
cli.add_command(demo)


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()
