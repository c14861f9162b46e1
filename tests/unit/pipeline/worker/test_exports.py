"""pipeline.worker.exports: the dispatch path and the vm_stats agent feed what operators read."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline.worker import exports
from tests.unit.pipeline.worker_harness import (
    NOW,
    Harness,
    build,
    completion,
    dispatched_decision,
    in_loop,
    put_from,
    submission,
    two_hosts,
    until,
)


def exported(h: Harness) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    exports.refresh(h.pipeline, [], {})
    text = h.pipeline.metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@in_loop
async def test_waiting_jobs_per_type_carry_the_reason_of_their_newest_decision(tmp_path):
    h = build(tmp_path)
    two_hosts(h)
    h.state("b1", "h2", 1000.0)  # both hosts at their limit: io jobs wait
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"j1", value=submission("j1", submitted_at=NOW - 4), timestamp=NOW)
        await agent.put(key=b"j2", value=submission("j2"), timestamp=NOW)
        await until(lambda: len(h.producer.decisions()) == 2, "two waiting decisions")
    h.clock.now = NOW + 6

    by_type = exports.waiting_by_type(h.pipeline)
    assert by_type == {
        "io": {
            "count": 2,
            "oldest_waiting_s": 6.0,  # waiting since it was decided, not since submitted
            "reason": "no eligible host among 2 candidates: 2 over limit",
            "reason_at": NOW,
        }
    }
    [io] = exports.job_types(h.pipeline)["job_types"]
    assert (io["job_type"], io["vms"], io["waiting"]) == ("io", 2, by_type["io"])
    assert io["response"] == {"count": 0, "p50_s": None, "p95_s": None, "p99_s": None}
    metrics = exported(h)
    assert metrics[("vmlb_waiting_jobs", frozenset({("job_type", "io")}))] == 2
    assert metrics[("vmlb_waiting_oldest_age_seconds", frozenset({("job_type", "io")}))] == 6.0
    refused = ("vmlb_decision_refusals_total", {("outcome", "waiting"), ("filter", "over limit")})
    assert metrics[(refused[0], frozenset(refused[1]))] == 2


@in_loop
async def test_a_dispatched_job_records_how_long_it_waited(tmp_path):
    h = build(tmp_path)
    two_hosts(h)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"j1", value=submission("j1", submitted_at=NOW - 0.2), timestamp=NOW)
        await until(lambda: h.producer.queued("b1"), "j1 dispatched")
    metrics = exported(h)
    assert metrics[("vmlb_job_waiting_seconds_count", frozenset({("job_type", "io")}))] == 1
    bucket = frozenset({("job_type", "io"), ("le", "0.25")})
    assert metrics[("vmlb_job_waiting_seconds_bucket", bucket)] == 1


@in_loop
async def test_completions_give_response_times_and_dispatches_give_vm_queues(tmp_path):
    h = build(tmp_path)
    two_hosts(h)
    async with h.agents["vm_stats"].test_context() as agent:
        for job_id, at in (("j1", NOW - 3), ("j2", NOW - 1)):
            decision = dispatched_decision("a1", job_id, at)
            await put_from(agent, "t.decisions", b"a1", decision.to_bytes())
        await until(lambda: len(h.pipeline.stats.rows.get("a1").inflight) == 2, "two in flight")
        done = completion("a1", "j1", NOW)
        await put_from(agent, "t.completions", b"a1", done.to_bytes())
        await put_from(agent, "t.completions", b"a1", done.to_bytes())  # redelivered: once
        await until(lambda: len(h.pipeline.stats.rows["a1"].inflight) == 1, "j1 completed")

    assert h.pipeline.metrics.response_percentiles(NOW)["io"] == {
        "count": 1,
        "p50_s": 1.0,
        "p95_s": 1.0,
        "p99_s": 1.0,
    }
    metrics = exported(h)
    assert metrics[("vmlb_job_response_seconds_count", frozenset({("job_type", "io")}))] == 1
    vm = frozenset({("vm", "a1"), ("host", "h1"), ("job_type", "io")})
    assert metrics[("vmlb_vm_queued_jobs", vm)] == 1
    assert metrics[("vmlb_vm_queue_oldest_age_seconds", vm)] == 1.0  # j2, dispatched at NOW - 1
