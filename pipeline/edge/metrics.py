"""What one worker counts: every Prometheus metric it exports, and the plain counts of `/status`.

Every metric is defined here, named by Prometheus' conventions (`vmlb_` prefix, base units,
`_total` counters, `_seconds`), and recorded through a small method, so a figure and its metric
never disagree and the code that records one says what happened, not how it is exported.
Tests run several apps in one process, so each worker's metrics live in a registry of its own.

Three kinds:

- events, counted or observed as they happen: decisions by outcome and by the filter that
  refused, dead letters, job response and waiting times per job type, seconds a host spent over
  its limit;
- state, set at scrape time from what the worker holds (`hosts_seen`, `waiting_seen`,
  `vm_queues_seen`): each call replaces the series it owns, so a host or job type that went away
  disappears instead of staying at its last value;
- `recent_response_s`: the last few minutes of response times per job type, for the web page's
  percentiles (a histogram's buckets are too coarse for a p99 read by a person).

With several workers, event metrics are shares (sum them); fleet state (per host) is what
every worker sees alike (take `max by (host)`); per-VM queues and waiting jobs are each counted
by the one worker that owns their partitions (sum them).
"""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pipeline.events import DispatchDecision

#: Job times, from a fast cpu job (tens of ms) to one that waited minutes for a host.
JOB_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
#: How long response times are kept for the web page's percentiles, and how many per job type.
RECENT_WINDOW_S = 300.0
RECENT_MAX_PER_TYPE = 5000


@dataclass(frozen=True)
class VmQueue:
    """Jobs dispatched to a VM and not completed yet."""

    vm_id: str
    host_id: str
    job_type: str
    jobs: int
    oldest_age_s: float


@dataclass(frozen=True)
class TypeWaiting:
    """Jobs of one type waiting for an eligible host."""

    job_type: str
    jobs: int
    oldest_age_s: float


class PipelineMetrics:
    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        #: Decisions by outcome and dead letters, since this worker started (for /status).
        self.counts: Tally[str] = Tally()
        #: Events the vm_stats agent handled, by input topic (logical name), for /status.
        self.stats_events: Tally[str] = Tally()
        #: VM samples the vm_stats agent read (an IoSample is one, a HostSample one per VM
        #: entry), for /status.
        self.stats_vm_samples = 0
        #: Labelled children of the per-job event metrics, by label value: `labels()` builds
        #: its key anew at every call (sorting and joining the label names), a few µs per job
        #: at full load. Only metrics that are never cleared are cached here.
        self._children: dict[tuple[int, str], Any] = {}
        self._refusal_children: dict[tuple[str, str], Any] = {}
        #: Monotonic seconds when the first batch with VM samples began, and when the latest
        #: one was done: the time spent reading them, for a catch-up rate that does not
        #: depend on how often someone polls /status.
        self.stats_vm_samples_first_s: float | None = None
        self.stats_vm_samples_last_s: float | None = None
        #: job_type -> (reason, decided_at) of its latest waiting decision (for /waiting).
        self.waiting_reasons: dict[str, tuple[str, float]] = {}
        #: job_type -> (finished_at, response_s), oldest first (for the web page's percentiles).
        self.recent_response_s: dict[str, deque[tuple[float, float]]] = {}

        # --- dispatching --------------------------------------------------------------------
        self.decisions = Counter(
            "vmlb_decisions", "dispatch decisions by outcome", ["outcome"], registry=registry
        )
        self.refusals = Counter(
            "vmlb_decision_refusals",
            "decisions in which a filter refused at least one candidate, by outcome and filter"
            " (of a waiting decision: why its job waits)",
            ["outcome", "filter"],
            registry=registry,
        )
        self.decision_seconds = Histogram(
            "vmlb_decision_duration_seconds",
            "time to decide one job (policy and snapshot)",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2),
            registry=registry,
        )
        self.waiting_jobs = Gauge(
            "vmlb_waiting_jobs",
            "jobs waiting for an eligible host, by job type (this worker's partitions)",
            ["job_type"],
            registry=registry,
        )
        self.waiting_oldest = Gauge(
            "vmlb_waiting_oldest_age_seconds",
            "how long the oldest waiting job of a type has waited",
            ["job_type"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "vmlb_dead_letters", "messages dead-lettered, by stage", ["stage"], registry=registry
        )
        self.unreadable_rows = Counter(
            "vmlb_unreadable_rows",
            "stored table rows that could not be read and were started afresh, by table",
            ["table"],
            registry=registry,
        )

        # --- jobs ---------------------------------------------------------------------------
        self.job_response = Histogram(
            "vmlb_job_response_seconds",
            "job response time, submitted to finished, by job type (completions this worker read)",
            ["job_type"],
            buckets=JOB_SECONDS_BUCKETS,
            registry=registry,
        )
        self.job_waiting = Histogram(
            "vmlb_job_waiting_seconds",
            "time a job waited for an eligible host, submitted to dispatched, by job type",
            ["job_type"],
            buckets=JOB_SECONDS_BUCKETS,
            registry=registry,
        )
        self.vm_queued = Gauge(
            "vmlb_vm_queued_jobs",
            "jobs dispatched to a VM and not completed yet (VMs of this worker's partitions)",
            ["vm", "host", "job_type"],
            registry=registry,
        )
        self.vm_queue_oldest = Gauge(
            "vmlb_vm_queue_oldest_age_seconds",
            "age of the oldest job dispatched to a VM and not completed yet",
            ["vm", "host", "job_type"],
            registry=registry,
        )

        # --- the fleet ----------------------------------------------------------------------
        self.host_table3_io = Gauge(
            "vmlb_host_table3_io_ops_per_second",
            "a host's I/O total, sum of load x io_per_job over its VMs (paper Table 3)",
            ["host"],
            registry=registry,
        )
        self.host_projected_io = Gauge(
            "vmlb_host_projected_io_ops_per_second",
            "a host's projected I/O: Table 3 plus dispatched, unfinished jobs (io-aware)",
            ["host"],
            registry=registry,
        )
        self.host_measured_io = Gauge(
            "vmlb_host_measured_io_ops_per_second",
            "a host's I/O rate as its Dom0 measured it",
            ["host"],
            registry=registry,
        )
        self.host_limit = Gauge(
            "vmlb_host_limit_ops_per_second",
            "a host's I/O limit (paper Table 1); absent while unknown",
            ["host"],
            registry=registry,
        )
        self.host_eligible = Gauge(
            "vmlb_host_eligible", "1 if the host may take jobs", ["host"], registry=registry
        )
        self.host_telemetry_age = Gauge(
            "vmlb_host_telemetry_age_seconds",
            "age of the host's newest telemetry",
            ["host"],
            registry=registry,
        )
        self.host_over_limit = Counter(
            "vmlb_host_over_limit_seconds",
            "seconds a host's measured I/O was above its limit, per telemetry interval",
            ["host"],
            registry=registry,
        )

        # --- the worker ---------------------------------------------------------------------
        self.stats_events_total = Counter(
            "vmlb_stats_events",
            "events handled by the vm_stats agent, by input topic",
            ["topic"],
            registry=registry,
        )
        self.stats_vm_samples_total = Counter(
            "vmlb_stats_vm_samples",
            "VM samples read by the vm_stats agent (an IoSample is one, a HostSample one per VM)",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "vmlb_consumer_lag_messages",
            "messages not yet consumed, by topic",
            ["topic"],
            registry=registry,
        )
        self.worker_info = Gauge(
            "vmlb_worker_info",
            "1, labelled with the worker's app id and policy",
            ["app_id", "policy"],
            registry=registry,
        )

    # --- events -------------------------------------------------------------------------------

    def _child(self, metric: Counter | Histogram, value: str) -> Any:
        """`metric.labels(value)` of a metric with one label, kept."""
        key = (id(metric), value)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(value)
        return child

    def decided(self, outcome: str) -> None:
        self._child(self.decisions, outcome).inc()
        self.counts[outcome] += 1

    def refused_by(self, decision: DispatchDecision) -> None:
        """Count the filters that refused candidates in a recorded decision; remember why a
        waiting one waits."""
        outcome = decision.outcome.value
        # `refused` counts every tested candidate's refusal, the recorded ones among them, so
        # the candidates need not be read (a busy decision records 16); a decision built
        # without it (by hand) is read from its candidates.
        names = {name for name, count in decision.refused.items() if count} or {
            c.rejected_by for c in decision.candidates if c.rejected_by
        }
        for name in names:
            key = (outcome, name)
            child = self._refusal_children.get(key)
            if child is None:
                child = self._refusal_children[key] = self.refusals.labels(
                    outcome=outcome, filter=name
                )
            child.inc()
        if outcome == "waiting":
            self.still_waiting(decision)

    def still_waiting(self, decision: DispatchDecision) -> None:
        """A job decided again and still waiting: its type's newest reason."""
        self.waiting_reasons[decision.job_type] = (decision.reason, decision.decided_at)

    def job_waited(self, job_type: str, waited_s: float) -> None:
        """A job was dispatched `waited_s` after it was submitted."""
        self._child(self.job_waiting, job_type).observe(max(0.0, waited_s))

    def job_finished(self, job_type: str, response_s: float, finished_at: float) -> None:
        """A job's completion was read (once per job): its response time, submitted to done."""
        response_s = max(0.0, response_s)
        self._child(self.job_response, job_type).observe(response_s)
        recent = self.recent_response_s.setdefault(job_type, deque(maxlen=RECENT_MAX_PER_TYPE))
        recent.append((finished_at, response_s))

    def over_limit(self, host_id: str, seconds: float) -> None:
        self.host_over_limit.labels(host=host_id).inc(seconds)

    def dead_lettered(self, stage: str) -> None:
        self.dead_letters.labels(stage=stage).inc()
        self.counts["dead_letters"] += 1

    def count_stats_events(self, handled: Mapping[str, int], vm_samples: int = 0) -> None:
        for topic, count in handled.items():
            self.stats_events[topic] += count
            self.stats_events_total.labels(topic=topic).inc(count)
        if vm_samples:
            self.stats_vm_samples += vm_samples
            self.stats_vm_samples_total.inc(vm_samples)

    def vm_samples_read_between(self, began_s: float, done_s: float) -> None:
        if self.stats_vm_samples_first_s is None:
            self.stats_vm_samples_first_s = began_s
        self.stats_vm_samples_last_s = done_s

    @property
    def stats_vm_samples_s(self) -> float:
        """Seconds from the start of the first batch with VM samples to the end of the latest."""
        if self.stats_vm_samples_first_s is None or self.stats_vm_samples_last_s is None:
            return 0.0
        return self.stats_vm_samples_last_s - self.stats_vm_samples_first_s

    # --- state, at scrape time ----------------------------------------------------------------

    def worker_seen(self, app_id: str, policy: str) -> None:
        self.worker_info.clear()
        self.worker_info.labels(app_id=app_id, policy=policy).set(1)

    def hosts_seen(self, hosts: Iterable[Mapping[str, Any]]) -> None:
        """The fleet's hosts as `pipeline.fleet.status.fleet_status` describes them."""
        gauges = (
            self.host_table3_io,
            self.host_projected_io,
            self.host_measured_io,
            self.host_limit,
            self.host_eligible,
            self.host_telemetry_age,
        )
        for gauge in gauges:
            gauge.clear()
        for host in hosts:
            host_id = host["host_id"]
            self.host_table3_io.labels(host=host_id).set(host["total_io_ops_per_s"])
            self.host_projected_io.labels(host=host_id).set(host["projected_io_ops_per_s"])
            self.host_measured_io.labels(host=host_id).set(host["measured_io_ops_per_s"])
            if host["limit_ops_per_s"] is not None:
                self.host_limit.labels(host=host_id).set(host["limit_ops_per_s"])
            self.host_eligible.labels(host=host_id).set(1.0 if host["eligible"] else 0.0)
            if host["telemetry_age_s"] is not None:
                self.host_telemetry_age.labels(host=host_id).set(host["telemetry_age_s"])

    def waiting_seen(self, by_type: Iterable[TypeWaiting]) -> None:
        self.waiting_jobs.clear()
        self.waiting_oldest.clear()
        for waiting in by_type:
            self.waiting_jobs.labels(job_type=waiting.job_type).set(waiting.jobs)
            self.waiting_oldest.labels(job_type=waiting.job_type).set(waiting.oldest_age_s)

    def vm_queues_seen(self, queues: Iterable[VmQueue]) -> None:
        self.vm_queued.clear()
        self.vm_queue_oldest.clear()
        for queue in queues:
            labels = {"vm": queue.vm_id, "host": queue.host_id, "job_type": queue.job_type}
            self.vm_queued.labels(**labels).set(queue.jobs)
            self.vm_queue_oldest.labels(**labels).set(queue.oldest_age_s)

    def lag_seen(self, behind: Mapping[str, int]) -> None:
        self.consumer_lag.clear()
        for topic, lag in behind.items():
            self.consumer_lag.labels(topic=topic).set(lag)

    # --- reading ------------------------------------------------------------------------------

    def response_percentiles(
        self, now: float, window_s: float = RECENT_WINDOW_S
    ) -> dict[str, dict[str, float | int | None]]:
        """Per job type, over the completions of the last `window_s`: count, p50, p95, p99."""
        answer: dict[str, dict[str, float | int | None]] = {}
        for job_type, recent in sorted(self.recent_response_s.items()):
            cutoff = now - window_s
            while recent and recent[0][0] < cutoff:
                recent.popleft()
            # Completions of different VMs arrive a little out of order: filter, too.
            values = sorted(response_s for at, response_s in recent if at >= cutoff)
            answer[job_type] = {
                "count": len(values),
                "p50_s": _quantile(values, 0.50),
                "p95_s": _quantile(values, 0.95),
                "p99_s": _quantile(values, 0.99),
            }
        return answer

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _quantile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted values (None for none), as the demo summary's."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 4)
