"""Prometheus metrics of one worker, in a registry of its own (tests run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class PipelineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "vmlb_decisions", "dispatch decisions by outcome", ["outcome"], registry=self.registry
        )
        self.decision_seconds = Histogram(
            "vmlb_decision_seconds",
            "time to decide one job (policy and snapshot)",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2),
            registry=self.registry,
        )
        self.stats_events = Counter(
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
