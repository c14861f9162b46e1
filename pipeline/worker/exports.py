"""What a worker shows its operators beyond its own events: Prometheus state and summaries.

- at each `/metrics` scrape, `refresh` sets the state metrics of `pipeline.edge.metrics` from what
  the worker holds: the fleet's hosts (as `/hosts` shows them), waiting jobs per type and jobs in
  flight on each VM (the dispatcher's books of this worker's partitions), consumer lag;
- a 1 s timer runs the fleet's `OverLimitClock` once the fleet view has caught up, so
  `vmlb_host_over_limit_seconds_total` grows per telemetry interval, between scrapes too;
- `/job-types` feeds the web page: per job type, its waiting jobs and why they wait
  (`waiting_by_type`, also the `by_type` field of `/waiting`: the reason and funnel of its
  newest waiting record) and its response-time percentiles over the last five minutes (from
  the completions this worker read).

Reads state, changes none of it.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from pipeline.dispatch.tracked import Tracked
from pipeline.edge.metrics import RECENT_WINDOW_S, TypeWaiting, VmQueue
from pipeline.fleet.status import OverLimitClock
from pipeline.worker.state import Pipeline

OVER_LIMIT_TICK_S = 1.0


def register(pipeline: Pipeline) -> None:
    app = pipeline.app
    over_limit = OverLimitClock(pipeline.metrics.over_limit)

    async def observe_over_limit() -> None:
        # Before the view has caught up, a host's newest telemetry jumps through its history.
        if pipeline.fleet.ready.is_set():
            over_limit.observe(pipeline.view)

    app.timer(OVER_LIMIT_TICK_S, name="over_limit_clock")(observe_over_limit)

    @app.page("/job-types")
    class JobTypesView(View):
        async def get(self, request: Request) -> Response:
            return self.json(job_types(pipeline))


def job_types(pipeline: Pipeline) -> dict[str, Any]:
    """Per job type (served by a VM, waiting, or completed lately): VMs, waiting, response."""
    now = pipeline.clock()
    waiting = waiting_by_type(pipeline)
    response = pipeline.metrics.response_percentiles(now)
    vms: dict[str, int] = {}
    for vm in pipeline.view.running_vms():
        vms[vm.job_type] = vms.get(vm.job_type, 0) + 1
    none_waiting = {"count": 0, "oldest_waiting_s": None, "reason": None, "reason_at": None}
    none_done = {"count": 0, "p50_s": None, "p95_s": None, "p99_s": None}
    return {
        "job_types": [
            {
                "job_type": job_type,
                "vms": vms.get(job_type, 0),
                "waiting": waiting.get(job_type, none_waiting),
                "response": response.get(job_type, none_done),
            }
            for job_type in sorted(set(vms) | set(waiting) | set(response))
        ],
        "response_window_s": RECENT_WINDOW_S,
        "time": now,
    }


def refresh(pipeline: Pipeline, hosts: list[dict[str, Any]], lag: dict[str, int]) -> None:
    """Set every state metric, just before an exposition."""
    metrics = pipeline.metrics
    now = pipeline.clock()
    metrics.worker_seen(pipeline.settings.app_id, pipeline.dispatcher.policy.name)
    metrics.hosts_seen(hosts)
    metrics.lag_seen(lag)
    metrics.waiting_seen(type_waiting(pipeline, now))
    metrics.vm_queues_seen(vm_queues(pipeline, now))


def waiting_entry(tracked: Tracked) -> dict[str, Any]:
    """One waiting job as `/waiting` lists it."""
    status = tracked.status
    job = status.job
    return {
        "job_id": status.job_id,
        "job_type": job.job_type,
        "state": status.state.value,
        "priority": job.priority,
        "submitter": job.submitter,
        "waiting_since": tracked.waiting_since,
        "deadline_at": job.deadline_at,
        "attempt": status.attempt,
        "decisions": tracked.decisions,
        "retry_at": status.retry_at,
        "reason": status.reason,
        "funnel": [step.model_dump() for step in status.funnel],
    }


def type_waiting(pipeline: Pipeline, now: float) -> list[TypeWaiting]:
    """Waiting jobs per type, over this worker's partitions, from the dispatcher's books."""
    jobs: dict[str, int] = {}
    oldest: dict[str, float] = {}
    for _, tracked in pipeline.core.waiting():
        job_type = tracked.job_type
        jobs[job_type] = jobs.get(job_type, 0) + 1
        since = tracked.waiting_since if tracked.waiting_since is not None else now
        oldest[job_type] = min(oldest.get(job_type, since), since)
    return [
        TypeWaiting(job_type, count, max(0.0, now - oldest[job_type]))
        for job_type, count in sorted(jobs.items())
    ]


def waiting_by_type(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Per waiting job type: how many, the oldest one's wait, and why: the reason of the job
    to go next (the one the policy refused last; those behind it wait for it), else of the
    newest record (every job of the type backing off)."""
    now = pipeline.clock()
    newest: dict[str, Tracked] = {}
    for _, tracked in pipeline.core.waiting():
        job_type = tracked.job_type
        seen = newest.get(job_type)
        if tracked.reason and (seen is None or tracked.at >= seen.at):
            newest[job_type] = tracked
    answer = {}
    for waiting in type_waiting(pipeline, now):
        latest = pipeline.core.head(waiting.job_type, now) or newest.get(waiting.job_type)
        answer[waiting.job_type] = {
            "count": waiting.jobs,
            "oldest_waiting_s": round(waiting.oldest_age_s, 3),
            "reason": latest.reason if latest else None,
            "funnel": [step.model_dump() for step in latest.status.funnel] if latest else [],
            "reason_at": latest.at if latest else None,
        }
    return answer


def vm_queues(pipeline: Pipeline, now: float) -> list[VmQueue]:
    """Jobs this worker dispatched to each VM and not yet ended (its partitions' books)."""
    queues = []
    for vm_id, count, oldest in pipeline.core.in_flight_by_vm(now):
        registration = pipeline.view.vms.get(vm_id)
        if registration is None:
            continue  # never registered (or forgotten): not a VM an operator can name
        queues.append(
            VmQueue(
                vm_id,
                registration.host_id,
                registration.job_type,
                count,
                max(0.0, now - oldest),
            )
        )
    return queues
