"""What one worker counts: Prometheus metrics in a registry of its own, and plain counts.

Tests run several apps in one process, so each worker's metrics live in their own registry. The
plain counts (`counts`, `stats_events`) are what `/status` shows; every increment goes through a
method here so that a figure and its metric never disagree.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class PipelineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        #: Decisions by outcome and dead letters, since this worker started (for /status).
        self.counts: Tally[str] = Tally()
        #: Events the vm_stats agent handled, by input topic (logical name), for /status.
        self.stats_events: Tally[str] = Tally()
        self.decisions = Counter(
            "vmlb_decisions", "dispatch decisions by outcome", ["outcome"], registry=self.registry
        )
        self.decision_seconds = Histogram(
            "vmlb_decision_seconds",
            "time to decide one job (policy and snapshot)",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2),
            registry=self.registry,
        )
        self.stats_events_total = Counter(
            "vmlb_stats_events",
            "events handled by the vm_stats agent, by input topic",
            ["topic"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "vmlb_jobs_waiting",
            "jobs waiting for an eligible host (this worker)",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "vmlb_dead_letters",
            "messages dead-lettered, by stage",
            ["stage"],
            registry=self.registry,
        )
        self.unreadable_rows = Counter(
            "vmlb_unreadable_rows",
            "stored table rows that could not be read and were started afresh, by table",
            ["table"],
            registry=self.registry,
        )
        self.host_total_io = Gauge(
            "vmlb_host_total_io_ops_per_s",
            "a host's I/O total (paper Table 3)",
            ["host"],
            registry=self.registry,
        )
        self.host_projected_io = Gauge(
            "vmlb_host_projected_io_ops_per_s",
            "a host's projected I/O (io-aware)",
            ["host"],
            registry=self.registry,
        )
        self.host_limit = Gauge(
            "vmlb_host_limit_ops_per_s",
            "a host's I/O limit (paper Table 1)",
            ["host"],
            registry=self.registry,
        )
        self.host_eligible = Gauge(
            "vmlb_host_eligible", "1 if the host may take jobs", ["host"], registry=self.registry
        )
        self.consumer_lag = Gauge(
            "vmlb_consumer_lag_messages",
            "messages not yet consumed, by topic",
            ["topic"],
            registry=self.registry,
        )

    def decided(self, outcome: str) -> None:
        self.decisions.labels(outcome=outcome).inc()
        self.counts[outcome] += 1

    def dead_lettered(self, stage: str) -> None:
        self.dead_letters.labels(stage=stage).inc()
        self.counts["dead_letters"] += 1

    def count_stats_events(self, handled: Mapping[str, int]) -> None:
        for topic, count in handled.items():
            self.stats_events[topic] += count
            self.stats_events_total.labels(topic=topic).inc(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
