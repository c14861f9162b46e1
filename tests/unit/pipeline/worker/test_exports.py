"""pipeline.worker.exports: the dispatch path and the vm_stats agent feed what operators read."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline.worker import exports
from tests.unit.pipeline.worker_harness import (
    NOW,
    Harness,
    build,
    completion,
    in_loop,
    put_from,
    submission,
    two_hosts,
    until,
)

P = 3  # the jobs partition of the test jobs


def submit(h: Harness, offset: int, job_id: str, **fields: object) -> None:
    """A job message, as the dispatcher's loop hands it to its core."""
    core = h.pipeline.core
    if P not in core.books:
        core.assign(P)
        core.recovered(P)
    core.on_job(P, offset, job_id.encode(), submission(job_id, **fields), NOW)
    core.take()


def exported(h: Harness) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    exports.refresh(h.pipeline, [], {})
    text = h.pipeline.metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_waiting_jobs_per_type_carry_the_reason_of_the_job_to_go_next(tmp_path):
    h = build_in_loop(tmp_path)
    two_hosts(h)
    h.state("b1", "h2", 1000.1)  # Dom0 measures both hosts over their limit: io jobs wait
    h.ready()
    submit(h, 1, "j1", submitted_at=NOW - 4)
    submit(h, 2, "j2")
    h.clock.now = NOW + 6

    by_type = exports.waiting_by_type(h.pipeline)
    assert by_type["io"]["count"] == 2
    assert by_type["io"]["oldest_waiting_s"] == 6.0  # waiting since decided, not submitted
    assert by_type["io"]["reason"] == "no eligible host among 2 candidates: 2 at limit (hysteresis)"
    assert by_type["io"]["reason_at"] == NOW
    assert by_type["io"]["funnel"][-1]["remaining"] == 0
    [io] = exports.job_types(h.pipeline)["job_types"]
    assert (io["job_type"], io["vms"], io["waiting"]) == ("io", 2, by_type["io"])
    assert io["response"] == {"count": 0, "p50_s": None, "p95_s": None, "p99_s": None}
    metrics = exported(h)
    assert metrics[("vmlb_waiting_jobs", frozenset({("job_type", "io")}))] == 2
    assert metrics[("vmlb_waiting_oldest_age_seconds", frozenset({("job_type", "io")}))] == 6.0
    refused = (
        "vmlb_decision_refusals_total",
        {("outcome", "waiting"), ("filter", "at limit (hysteresis)")},
    )
    # j1 was refused by the filter; j2 arrived behind it and waits for it, refused by nothing.
    assert metrics[(refused[0], frozenset(refused[1]))] == 1


def test_a_dispatched_job_records_how_long_it_waited_and_counts_on_its_vm(tmp_path):
    h = build_in_loop(tmp_path)
    two_hosts(h)
    h.ready()
    submit(h, 1, "j1", submitted_at=NOW - 0.2)
    h.clock.now = NOW + 1
    metrics = exported(h)
    assert metrics[("vmlb_job_waiting_seconds_count", frozenset({("job_type", "io")}))] == 1
    bucket = frozenset({("job_type", "io"), ("le", "0.25")})
    assert metrics[("vmlb_job_waiting_seconds_bucket", bucket)] == 1
    vm = frozenset({("vm", "b1"), ("host", "h2"), ("job_type", "io")})
    assert metrics[("vmlb_vm_queued_jobs", vm)] == 1
    assert metrics[("vmlb_vm_queue_oldest_age_seconds", vm)] == 1.0


@in_loop
async def test_completions_give_response_times(tmp_path):
    h = build(tmp_path)
    two_hosts(h)
    async with h.agents["vm_stats"].test_context() as agent:
        done = completion("a1", "j1", NOW)
        await put_from(agent, "t.completions", b"a1", done.to_bytes())
        await put_from(agent, "t.completions", b"a1", done.to_bytes())  # redelivered: once
        await until(lambda: h.pipeline.stats.rows.get("a1"), "j1 counted")
    assert h.pipeline.metrics.response_percentiles(NOW)["io"] == {
        "count": 1,
        "p50_s": 1.0,
        "p95_s": 1.0,
        "p99_s": 1.0,
    }
    metrics = exported(h)
    assert metrics[("vmlb_job_response_seconds_count", frozenset({("job_type", "io")}))] == 1


def build_in_loop(tmp_path) -> Harness:
    """A worker whose dispatch core is driven directly (Faust wants a running loop to build)."""
    import asyncio

    async def make() -> Harness:
        return build(tmp_path)

    return asyncio.run(make())
