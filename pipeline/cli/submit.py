"""`vmlb submit`: one job, a .jsonl file of jobs, or generated load."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from pipeline.cli.common import KafkaSettings, console, kafka_options


@click.command("submit")
@kafka_options
@click.option("--type", "job_type", default=None, help="submit one job of this type")
@click.option("--payload", default=None, help="the job's payload, a JSON object")
@click.option(
    "--deadline",
    "deadline_s",
    type=float,
    default=None,
    help="seconds from submission after which a still-waiting job is dead-lettered",
)
@click.option("--id", "job_id", default=None, help="the job id (default: a new uuid)")
@click.option(
    "--max-attempts",
    type=int,
    default=None,
    help="runs allowed in all: a failed run is retried with backoff (default 1)",
)
@click.option(
    "--priority", type=int, default=None, help="0..9, higher leaves the wait first (default 4)"
)
@click.option("--submitter", "submitter_name", default=None, help="whose jobs (fair turns)")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="submit every line of a .jsonl file ('-' for stdin)",
)
@click.option(
    "--rate", "rate_per_s", type=float, default=None, help="generate load: jobs per second"
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="generate load: how many jobs"
)
@click.option(
    "--mix",
    default=None,
    help="generate load: JOB_TYPE=WEIGHT,... (e.g. io-heavy=0.5,cpu-heavy=0.5)",
)
@click.option(
    "--ramp",
    "ramp_s",
    type=float,
    default=0.0,
    show_default=True,
    help="generate load: seconds over which the rate grows from 0 to --rate",
)
@click.option("--seed", type=int, default=None, help="generate load: seed for the type mix")
def submit(
    settings: KafkaSettings,
    job_type: str | None,
    payload: str | None,
    deadline_s: float | None,
    job_id: str | None,
    max_attempts: int | None,
    priority: int | None,
    submitter_name: str | None,
    path: Path | None,
    rate_per_s: float | None,
    count: int | None,
    mix: str | None,
    ramp_s: float,
    seed: int | None,
) -> None:
    """Submit jobs to the jobs topic; print each job id (one per line).

    \b
    vmlb submit --type io-heavy --payload '{"io_ops": 400}' --deadline 60
    vmlb submit --file jobs.jsonl
    vmlb submit --rate 20 --count 500 --mix io-heavy=0.5,cpu-heavy=0.5 --ramp 10
    """
    from producers.submit import (
        LoadPlan,
        Submitter,
        parse_jobs_lines,
        parse_mix,
        parse_payload,
        run_load,
    )

    modes = [
        name
        for name, given in (("--type", job_type), ("--file", path), ("--rate", rate_per_s))
        if given is not None
    ]
    if len(modes) != 1:
        raise click.UsageError(
            "give exactly one of --type (one job), --file (a .jsonl file) or --rate (load)"
        )
    if rate_per_s is not None and (count is None or mix is None):
        raise click.UsageError("--rate needs --count and --mix")
    # Everything is validated before the first job is sent.
    job_payload = parse_payload(payload)
    if path is not None:
        lines = sys.stdin if str(path) == "-" else path.read_text().splitlines()
        submissions = parse_jobs_lines(lines, now=time.time(), source=str(path))
    plan = None
    if rate_per_s is not None:
        assert count is not None and mix is not None
        plan = LoadPlan(
            rate_per_s,
            count,
            parse_mix(mix),
            ramp_s,
            job_payload or None,
            deadline_s,
            seed,
            max_attempts=max_attempts,
            priority=priority,
            submitter=submitter_name,
        )
    with Submitter(settings) as submitter:
        if job_type is not None:
            console.print(
                submitter.submit(
                    job_type,
                    job_payload,
                    deadline_s,
                    job_id,
                    max_attempts=max_attempts,
                    priority=priority,
                    submitter=submitter_name,
                ),
                highlight=False,
            )
        elif path is not None:
            for submission in submissions:
                console.print(submitter.send(submission), highlight=False)
        elif plan is not None:
            started = time.monotonic()
            job_ids = run_load(submitter, plan)
            elapsed_s = time.monotonic() - started
            console.print(f"submitted {len(job_ids)} jobs in {elapsed_s:.1f}s to {submitter.topic}")
