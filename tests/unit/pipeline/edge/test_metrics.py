"""Every metric a worker exports: Prometheus' naming conventions, and each recording method."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline.edge.metrics import PipelineMetrics, TypeWaiting, VmQueue
from pipeline.events import CandidateView, DecisionOutcome, DispatchDecision

#: Units spelled out, never abbreviated (promtool flags `_s`, `_ms`, ...).
BASE_UNIT_SUFFIXES = ("_seconds", "_ops_per_second", "_jobs", "_messages")


def samples(metrics: PipelineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: PipelineMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def decision(outcome: str, rejected: list[str | None], job_type: str = "io") -> DispatchDecision:
    return DispatchDecision(
        job_id="j1",
        job_type=job_type,
        decided_at=1000.0,
        policy="io-aware",
        outcome=DecisionOutcome(outcome),
        reason="no eligible host among 3 candidates: 2 over limit, 1 stale",
        candidates=[
            CandidateView(
                vm_id=f"v{n}",
                host_id="h1",
                total_io_ops_per_s=1.0,
                eligible=by is None,
                rejected_by=by,
            )
            for n, by in enumerate(rejected)
        ],
    )


def test_every_metric_is_named_by_prometheus_conventions():
    metrics = PipelineMetrics()
    families = list(metrics.registry.collect())
    assert len(families) >= 20
    for family in families:
        assert family.name.startswith("vmlb_"), family.name
        assert family.documentation, family.name
        if family.type == "counter":  # prometheus_client appends _total when exposing
            assert not family.name.endswith("_total"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        parts = family.name.split("_")
        assert not {"s", "ms", "sec", "secs", "per_s"} & set(parts), family.name


def test_refusals_count_each_refusing_filter_once_per_decision_and_keep_the_reason():
    metrics = PipelineMetrics()
    metrics.refused_by(decision("waiting", ["over limit", "over limit", "stale"]))
    metrics.refused_by(decision("dispatched", ["over limit", None]))
    assert (
        value(metrics, "vmlb_decision_refusals_total", outcome="waiting", filter="over limit") == 1
    )
    assert value(metrics, "vmlb_decision_refusals_total", outcome="waiting", filter="stale") == 1
    assert (
        value(metrics, "vmlb_decision_refusals_total", outcome="dispatched", filter="over limit")
        == 1
    )
    assert metrics.waiting_reasons == {
        "io": ("no eligible host among 3 candidates: 2 over limit, 1 stale", 1000.0)
    }


def test_job_times_are_histograms_per_job_type():
    metrics = PipelineMetrics()
    metrics.job_waited("io", 0.2)
    metrics.job_waited("io", 40.0)
    metrics.job_finished("cpu", 0.03, finished_at=1000.0)
    assert value(metrics, "vmlb_job_waiting_seconds_count", job_type="io") == 2
    assert value(metrics, "vmlb_job_waiting_seconds_bucket", job_type="io", le="0.25") == 1
    assert value(metrics, "vmlb_job_waiting_seconds_bucket", job_type="io", le="60.0") == 2
    assert value(metrics, "vmlb_job_response_seconds_sum", job_type="cpu") == 0.03


def test_response_percentiles_cover_the_recent_window_per_type():
    metrics = PipelineMetrics()
    for n in range(1, 101):
        metrics.job_finished("io", n / 100, finished_at=1000.0 + n)
    metrics.job_finished("io", 99.0, finished_at=500.0)  # out of order, and out of the window
    metrics.job_finished("cpu", 0.5, finished_at=1100.0)
    percentiles = metrics.response_percentiles(now=1100.0, window_s=300.0)
    assert percentiles["io"] == {"count": 100, "p50_s": 0.5, "p95_s": 0.95, "p99_s": 0.99}
    assert percentiles["cpu"]["count"] == 1
    assert metrics.response_percentiles(now=2000.0, window_s=300.0)["io"]["count"] == 0


def test_state_metrics_replace_their_series_at_each_scrape():
    metrics = PipelineMetrics()
    host = {
        "host_id": "h1",
        "total_io_ops_per_s": 900.0,
        "projected_io_ops_per_s": 950.0,
        "measured_io_ops_per_s": 910.0,
        "limit_ops_per_s": 1000.0,
        "eligible": True,
        "telemetry_age_s": 0.4,
    }
    metrics.hosts_seen([host, {**host, "host_id": "h2", "limit_ops_per_s": None}])
    metrics.waiting_seen([TypeWaiting("io", 3, 12.5)])
    metrics.vm_queues_seen([VmQueue("a1", "h1", "io", 2, 1.5)])
    assert value(metrics, "vmlb_host_telemetry_age_seconds", host="h1") == 0.4
    assert value(metrics, "vmlb_host_limit_ops_per_second", host="h1") == 1000.0
    assert value(metrics, "vmlb_host_limit_ops_per_second", host="h2") is None  # unknown: absent
    assert value(metrics, "vmlb_waiting_jobs", job_type="io") == 3
    assert value(metrics, "vmlb_waiting_oldest_age_seconds", job_type="io") == 12.5
    labels = {"vm": "a1", "host": "h1", "job_type": "io"}
    assert value(metrics, "vmlb_vm_queued_jobs", **labels) == 2
    assert value(metrics, "vmlb_vm_queue_oldest_age_seconds", **labels) == 1.5

    metrics.hosts_seen([host])
    metrics.waiting_seen([])
    metrics.vm_queues_seen([])
    assert value(metrics, "vmlb_host_eligible", host="h2") is None  # gone, not stuck at 1
    assert value(metrics, "vmlb_waiting_jobs", job_type="io") is None
    assert value(metrics, "vmlb_vm_queued_jobs", **labels) is None


def test_seconds_over_limit_is_a_counter_per_host():
    metrics = PipelineMetrics()
    metrics.over_limit("h1", 1.0)
    metrics.over_limit("h1", 0.5)
    assert value(metrics, "vmlb_host_over_limit_seconds_total", host="h1") == 1.5


def test_per_job_events_land_on_their_own_label_whichever_came_first() -> None:
    # The labelled series are kept after first use: each value must keep its own.
    metrics, other = PipelineMetrics(), PipelineMetrics()
    for outcome in ("dispatched", "waiting", "dispatched"):
        metrics.decided(outcome)
    other.decided("waiting")  # another worker's registry, in the same process
    metrics.job_waited("io", 0.02)
    metrics.job_waited("cpu", 7.0)
    metrics.job_waited("io", 0.03)
    metrics.job_finished("cpu", 0.5, 1000.0)
    assert value(metrics, "vmlb_decisions_total", outcome="dispatched") == 2
    assert value(metrics, "vmlb_decisions_total", outcome="waiting") == 1
    assert value(other, "vmlb_decisions_total", outcome="waiting") == 1
    assert value(other, "vmlb_decisions_total", outcome="dispatched") is None
    assert value(metrics, "vmlb_job_waiting_seconds_count", job_type="io") == 2
    assert value(metrics, "vmlb_job_waiting_seconds_sum", job_type="cpu") == 7.0
    assert value(metrics, "vmlb_job_response_seconds_count", job_type="cpu") == 1
    assert value(metrics, "vmlb_job_response_seconds_count", job_type="io") is None


def test_refusals_come_from_the_decisions_count_of_every_tested_candidate():
    # A busy decision records a few refused candidates as examples; `refused` counts them all,
    # those too, and each refusing filter is counted once per decision.
    metrics = PipelineMetrics()
    counted = decision("waiting", ["stale"]).model_copy(
        update={"refused": {"stale": 1, "backlog full": 14}}
    )
    metrics.refused_by(counted)
    metrics.refused_by(counted)
    for name in ("stale", "backlog full"):
        assert value(metrics, "vmlb_decision_refusals_total", outcome="waiting", filter=name) == 2
