"""`vmlb host cordon|drain|uncordon HOST`: an operator takes a host out of service and back.

Nomad's node drain and Nova's disabled service, on the compacted `host-admin` topic (so the
state survives worker restarts and every dispatcher sees it): a cordoned host gets no new jobs;
a draining one also has its queued, unstarted jobs moved elsewhere once the deadline passes;
`uncordon` makes it active again. `vmlb status`, `/hosts` and the web page show the mode.
"""

from __future__ import annotations

import time

import click
from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline.cli.common import KafkaSettings, console, kafka_options
from pipeline.errors import VmlbError
from pipeline.events import HostAdmin, HostMode
from pipeline.topics import topics_of
from producers.runtime import parse_duration_s, require_identifier


def _publish(settings: KafkaSettings, admin: HostAdmin) -> None:
    topic = topics_of(settings).name("host-admin")
    try:
        producer = KafkaProducer(**settings.to_kafka_python_producer(client_id="vmlb-host-admin"))
        try:
            producer.send(topic, value=admin.to_bytes(), key=admin.key()).get(timeout=30)
        finally:
            producer.close(timeout=5)
    except KafkaError as exc:
        raise VmlbError(f"{topic}: not acknowledged: {exc}") from None
    deadline = f", deadline in {admin.deadline_at - admin.set_at:.0f}s" if admin.deadline_at else ""
    console.print(f"host {admin.host_id}: {admin.mode.value}{deadline} ({topic})")


def _admin(host_id: str, mode: HostMode, reason: str | None, deadline: str | None) -> HostAdmin:
    require_identifier(host_id, "HOST")
    now = time.time()
    deadline_at = None
    if deadline is not None:
        try:
            deadline_at = now + parse_duration_s(deadline, what="--deadline")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return HostAdmin(host_id=host_id, mode=mode, reason=reason, deadline_at=deadline_at, set_at=now)


@click.command("cordon")
@kafka_options
@click.argument("host_id", metavar="HOST")
@click.option("--reason", default=None, help="why (shown with the host)")
def cordon(settings: KafkaSettings, host_id: str, reason: str | None) -> None:
    """No new jobs for HOST; its queued jobs still run there."""
    _publish(settings, _admin(host_id, HostMode.CORDONED, reason, None))


@click.command("drain")
@kafka_options
@click.argument("host_id", metavar="HOST")
@click.option("--reason", default=None, help="why (shown with the host)")
@click.option(
    "--deadline",
    default=None,
    help="how long its queued jobs may still start there (e.g. 90s, 10m); default: move them now",
)
def drain(settings: KafkaSettings, host_id: str, reason: str | None, deadline: str | None) -> None:
    """No new jobs for HOST, and its queued, unstarted jobs move elsewhere at the deadline."""
    _publish(settings, _admin(host_id, HostMode.DRAINING, reason, deadline))


@click.command("uncordon")
@kafka_options
@click.argument("host_id", metavar="HOST")
def uncordon(settings: KafkaSettings, host_id: str) -> None:
    """HOST takes jobs again."""
    _publish(settings, _admin(host_id, HostMode.ACTIVE, None, None))
