"""`vmlb job status|wait|cancel ID`: follow a job by its id, from any machine that reaches Kafka.

Reads the compacted `job-status` topic directly (the job's partition, see
`pipeline.topics.jobs`), as any Kafka client can; no worker needs to answer.
"""

from __future__ import annotations

import json

import click

from pipeline.cli.common import KafkaSettings, console, kafka_options
from pipeline.errors import VmlbError
from pipeline.events import JobState, JobStatus
from pipeline.topics import topics_of
from pipeline.topics.jobs import latest_status, wait_for_status
from producers.runtime import parse_duration_s, require_identifier


@click.group("job")
def job() -> None:
    """A submitted job: where it is, wait for its end, cancel it."""


def _show(status: JobStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status.model_dump(mode="json", exclude_none=True)))
        return
    where = f" on {status.vm_id} ({status.host_id})" if status.vm_id else ""
    console.print(
        f"[bold]{status.job_id}[/]: {status.state.value}{where}, attempt {status.attempt}",
        highlight=False,
    )
    if status.reason:
        console.print(f"  reason: {status.reason}", highlight=False)
    if status.funnel:
        steps = " -> ".join(f"{step.rule} {step.remaining}" for step in status.funnel)
        console.print(f"  candidates: {steps}", highlight=False)
    if status.error:
        console.print(f"  error: {status.error}", highlight=False)
    if status.result is not None:
        console.print(f"  result: {json.dumps(status.result)}", highlight=False)


@job.command("status")
@kafka_options
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="the latest JobStatus record as JSON")
def status(settings: KafkaSettings, job_id: str, as_json: bool) -> None:
    """The job's latest status (exit 1 if there is none)."""
    require_identifier(job_id, "ID")
    found = latest_status(settings, topics_of(settings), job_id)
    if found is None:
        raise VmlbError(
            f"no job {job_id!r} on {topics_of(settings).name('job-status')}: never submitted, "
            "not taken by a dispatcher yet, or ended longer ago than VMLB_DEDUPE_HORIZON_S"
        )
    _show(found, as_json)


@job.command("wait")
@kafka_options
@click.argument("job_id", metavar="ID")
@click.option("--timeout", default="60s", show_default=True, help="how long to wait, e.g. 90s")
@click.option("--json", "as_json", is_flag=True, help="the final JobStatus record as JSON")
def wait(settings: KafkaSettings, job_id: str, timeout: str, as_json: bool) -> None:
    """Until the job ends; prints its result. Exit 0 if it succeeded, 1 if it ended otherwise,
    2 if it has not ended within --timeout."""
    require_identifier(job_id, "ID")
    try:
        timeout_s = parse_duration_s(timeout, what="--timeout")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    final = wait_for_status(settings, topics_of(settings), job_id, timeout_s=timeout_s)
    if final is None or not final.terminal:
        state = final.state.value if final else "not seen"
        raise VmlbError(f"job {job_id}: not ended after {timeout_s:g}s ({state})")
    _show(final, as_json)
    if final.state is not JobState.SUCCEEDED:
        raise click.exceptions.Exit(1)


@job.command("cancel")
@kafka_options
@click.argument("job_id", metavar="ID")
@click.option("--reason", default=None, help="why (shown in its status)")
@click.option("--force", is_flag=True, help="send the cancel even if the job is not found")
def cancel(settings: KafkaSettings, job_id: str, reason: str | None, force: bool) -> None:
    """Cancel a job: waiting ones at once, queued ones are skipped, running ones are asked."""
    from producers.submit import Submitter

    require_identifier(job_id, "ID")
    topics = topics_of(settings)
    found = latest_status(settings, topics, job_id)
    if found is None and not force:
        raise VmlbError(f"no job {job_id!r} (use --force to cancel one not submitted yet)")
    if found is not None and found.terminal:
        raise VmlbError(f"job {job_id} already ended: {found.state.value}")
    with Submitter(settings) as submitter:
        submitter.cancel(job_id, reason)
    console.print(f"cancel requested for {job_id} ({topics.name('job-control')})")
