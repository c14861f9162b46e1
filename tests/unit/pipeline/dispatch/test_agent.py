"""The dispatch and retry agents (pipeline.dispatch), driven with test_context(), no broker."""

from __future__ import annotations

import json

from pipeline.events import (
    DecisionOutcome,
)
from tests.unit.pipeline.worker_harness import (
    NOW,
    build,
    in_loop,
    submission,
    two_hosts,
    until,
)

# --- dispatch ---------------------------------------------------------------------------------


@in_loop
async def test_a_bad_job_is_dead_lettered_and_the_next_good_one_is_decided(tmp_path):
    h = build(tmp_path)
    two_hosts(h)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"junk", value=b"{not json", partition=3, timestamp=NOW)
        await agent.put(key=b"j1", value=submission("j1"), partition=3, timestamp=NOW)
        await until(lambda: h.producer.decisions(), "a decision on j1")

    [letter] = h.producer.dead_letters()
    assert letter.source_topic == "t.jobs"
    assert (letter.source_partition, letter.source_offset) == (3, 0)
    assert letter.source_key == "junk"
    assert letter.payload == "{not json"
    assert letter.reason.startswith("JobSubmission: not JSON")
    assert (letter.stage, letter.dead_lettered_at) == ("dispatcher", NOW)

    [decision] = h.producer.decisions()
    assert decision.outcome is DecisionOutcome.DISPATCHED
    assert (decision.job_id, decision.vm_id, decision.host_id) == ("j1", "b1", "h2")
    assert h.producer.on("decisions")[0][0] == b"b1"  # keyed by the VM: co-partitioned
    [queued] = h.producer.queued("b1")
    assert (queued.job_id, queued.dispatched_at, queued.submitted_at) == ("j1", NOW, NOW)
    assert h.dispatched["j1"].vm_id == "b1"
    assert h.dispatched["j1"].partition == 3
    assert h.pipeline.metrics.counts == {"dead_letters": 1, "dispatched": 1}


@in_loop
async def test_jobs_go_only_to_the_host_under_its_limit(tmp_path):
    h = build(tmp_path)
    two_hosts(h)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        for n in range(6):
            await agent.put(key=f"j{n}".encode(), value=submission(f"j{n}"), timestamp=NOW)
        await until(lambda: len(h.producer.decisions()) == 6, "six decisions")

    assert {d.vm_id for d in h.producer.decisions()} == {"b1"}
    assert [q.job_id for q in h.producer.queued("b1")] == [f"j{n}" for n in range(6)]
    assert h.producer.queued("a1") == []
    assert h.producer.dead_letters() == []


@in_loop
async def test_a_job_of_an_unknown_type_is_rejected_and_dead_lettered(tmp_path):
    h = build(tmp_path)
    two_hosts(h)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"g1", value=submission("g1", job_type="gpu"), timestamp=NOW)
        await until(lambda: h.producer.dead_letters(), "the dead letter of g1")

    [decision] = h.producer.decisions()
    assert decision.outcome is DecisionOutcome.REJECTED
    assert decision.reason == "no VM serves job type 'gpu'"
    assert h.producer.on("decisions")[0][0] == b"g1"  # no VM: keyed by the job
    [letter] = h.producer.dead_letters()
    assert (letter.job_id, letter.stage, letter.source_topic) == ("g1", "dispatcher", "t.jobs")
    assert letter.reason == "no VM serves job type 'gpu'"
    assert json.loads(letter.payload or "")["job_type"] == "gpu"
    assert h.waiting == {}


@in_loop
async def test_a_job_with_no_eligible_host_waits_and_the_retry_dispatches_it_once_a_limit_rises(
    tmp_path,
):
    h = build(tmp_path)
    h.host("h1", io_limit=1000.0)
    h.vm("a1", "h1")
    h.state("a1", "h1", 1000.1)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"w1", value=submission("w1"), partition=2, timestamp=NOW)
        await until(lambda: h.waiting, "w1 stored as waiting")
        await until(lambda: h.producer.decisions(), "the waiting decision")

    assert h.waiting["w1"].partition == 2
    assert h.waiting["w1"].waiting_since == NOW
    assert h.waiting["w1"].attempts == 1
    [waiting] = h.producer.decisions()
    assert waiting.outcome is DecisionOutcome.WAITING
    assert waiting.reason == "no eligible host among 1 candidate: 1 at limit (hysteresis)"
    assert [job.job_id for job in h.waiting_index.by_type(2)["io"]] == ["w1"]
    assert h.producer.queued("a1") == []

    h.clock.now = NOW + 1
    h.state("a1", "h1", 1000.1)  # still reporting, still over 1000 ops/s
    h.operator_limit("h1", 5000.0)  # `vmlb limit set --host h1 --io-limit 5000`
    async with h.agents["retry"].test_context() as retry:
        await retry.put(key=None, value=b"", partition=1)  # another partition's tick
        await retry.put(key=None, value=b"", partition=2)
        await until(lambda: h.producer.queued("a1"), "w1 queued on a1")

    [queued] = h.producer.queued("a1")
    assert (queued.job_id, queued.dispatched_at) == ("w1", NOW + 1)
    retried = h.producer.decisions()[1]
    assert retried.outcome is DecisionOutcome.DISPATCHED
    assert (retried.vm_id, retried.attempt) == ("a1", 2)
    assert h.waiting == {}
    assert h.waiting_index.count() == 0
    assert h.dispatched["w1"].partition == 2
    # The tick's stream context is partition 2's, so the writes land in the job's changelog
    # partition (a restored worker would otherwise resurrect or lose the job).
    assert h.producer.changelog_of("waiting_jobs") == [(2, b'"w1"', False), (2, b'"w1"', True)]
    assert h.producer.changelog_of("dispatched") == [(2, b'"w1"', False)]


@in_loop
async def test_a_tick_for_another_partition_leaves_a_waiting_job_alone(tmp_path):
    h = build(tmp_path)
    h.host("h1", io_limit=1000.0)
    h.vm("a1", "h1")
    h.state("a1", "h1", 1000.1)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"w1", value=submission("w1"), partition=2, timestamp=NOW)
        await until(lambda: h.producer.decisions(), "the waiting decision")
    h.operator_limit("h1", 5000.0)
    h.waiting_index.clear()  # as after a rebalance: rebuilt from the table per tick
    async with h.agents["retry"].test_context() as retry:
        await retry.put(key=None, value=b"", partition=1)
        await retry.put(key=None, value=b"", partition=1)  # the first one is surely handled
        await until(lambda: h.waiting_index.built(1), "partition 1's index")

    assert h.producer.queued("a1") == []
    assert list(h.waiting) == ["w1"]
    assert not h.waiting_index.built(2)


@in_loop
async def test_a_job_before_the_fleet_view_is_ready_waits_and_is_decided_once_it_is(tmp_path):
    h = build(tmp_path)
    two_hosts(h)  # known to the view, but the view has not caught up yet
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"early", value=submission("early"), partition=0, timestamp=NOW)
        await until(lambda: h.producer.decisions(), "the waiting decision")
    [decision] = h.producer.decisions()
    assert decision.outcome is DecisionOutcome.WAITING
    assert decision.reason == "fleet view not caught up yet"
    assert list(h.waiting) == ["early"]

    async with h.agents["retry"].test_context() as retry:
        await retry.put(key=None, value=b"", partition=0)  # not ready: nothing happens
        h.ready()
        await retry.put(key=None, value=b"", partition=0)
        await until(lambda: h.producer.queued("b1"), "early queued on b1")
    assert [d.outcome for d in h.producer.decisions()] == [
        DecisionOutcome.WAITING,
        DecisionOutcome.DISPATCHED,
    ]
    assert h.waiting == {}


@in_loop
async def test_a_waiting_job_past_its_deadline_is_expired_even_behind_a_blocked_one(tmp_path):
    h = build(tmp_path)
    h.host("h1", io_limit=1000.0)
    h.vm("a1", "h1")
    h.state("a1", "h1", 1000.1)
    h.ready()
    late = submission("late", submitted_at=NOW, deadline_s=2.0)
    async with h.agents["dispatch"].test_context() as agent:
        # Same waiting_since: "first" is tried first (job id order) and blocks its type.
        await agent.put(key=b"first", value=submission("first"), partition=0, timestamp=NOW)
        await agent.put(key=b"late", value=late, partition=0, timestamp=NOW)
        await until(lambda: len(h.waiting) == 2, "both stored as waiting")

    h.clock.now = NOW + 2.5
    h.state("a1", "h1", 1000.1)
    async with h.agents["retry"].test_context() as retry:
        await retry.put(key=None, value=b"", partition=0)
        await until(lambda: h.producer.dead_letters(), "the dead letter of late")

    expired = h.producer.decisions()[-1]
    assert (expired.job_id, expired.outcome) == ("late", DecisionOutcome.EXPIRED)
    assert expired.reason == "deadline passed: 0.5s after submitted_at + deadline_s"
    assert expired.attempt == 2
    [letter] = h.producer.dead_letters()
    assert (letter.job_id, letter.reason) == ("late", expired.reason)
    # Decided by the retry, not from a message: no offset, but the job's partition.
    assert (letter.source_partition, letter.source_offset) == (0, None)
    assert list(h.waiting) == ["first"]
    assert [job.job_id for job in h.waiting_index.by_type(0)["io"]] == ["first"]


@in_loop
async def test_a_job_type_with_no_eligible_host_does_not_hold_up_another_type(tmp_path):
    h = build(tmp_path)
    h.host("h1", io_limit=1000.0)
    h.host("h2", io_limit=1000.0)
    h.vm("a1", "h1", job_type="io")
    h.vm("c1", "h2", job_type="cpu")
    h.state("a1", "h1", 1000.1)
    h.state("c1", "h2", 1000.1)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"io1", value=submission("io1", "io"), partition=0, timestamp=NOW)
        await agent.put(key=b"cpu1", value=submission("cpu1", "cpu"), partition=0, timestamp=NOW)
        await until(lambda: len(h.waiting) == 2, "both stored as waiting")

    h.clock.now = NOW + 1  # past the snapshot cache's min_rebuild_s
    h.state("a1", "h1", 1000.1)
    h.state("c1", "h2", 1000.1)
    h.operator_limit("h2", 5000.0)
    async with h.agents["retry"].test_context() as retry:
        await retry.put(key=None, value=b"", partition=0)
        await until(lambda: h.producer.queued("c1"), "cpu1 queued on c1")
    assert list(h.waiting) == ["io1"]
    assert h.producer.queued("a1") == []


@in_loop
async def test_a_redelivered_dispatched_job_is_resent_to_the_same_vm_without_a_new_decision(
    tmp_path,
):
    h = build(tmp_path)
    two_hosts(h)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"j1", value=submission("j1"), timestamp=NOW)
        await until(lambda: h.producer.queued("b1"), "j1 queued")
        h.operator_limit("h1", 50_000.0)  # a1 would be a fine choice now
        h.state("b1", "h2", 999.0)  # and b1 a poor one
        await agent.put(key=b"j1", value=submission("j1"), timestamp=NOW)
        await until(lambda: len(h.producer.queued("b1")) == 2, "j1 re-sent")

    first, again = h.producer.queued("b1")
    assert again == first
    assert len(h.producer.decisions()) == 1


@in_loop
async def test_each_retry_of_a_waiting_job_counts_its_attempt(tmp_path):
    # Every retry used to record attempt=2: the waiting row's count was never updated.
    h = build(tmp_path)
    h.host("h1", io_limit=1000.0)
    h.vm("a1", "h1")
    h.state("a1", "h1", 1000.1)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"w1", value=submission("w1"), partition=0, timestamp=NOW)
        await until(lambda: h.waiting, "w1 stored as waiting")
    async with h.agents["retry"].test_context() as retry:
        for n in range(2, 4):  # two retries that still find no host
            h.clock.now = NOW + n
            h.state("a1", "h1", 1000.1)
            await retry.put(key=None, value=b"", partition=0)
            await until(lambda n=n: h.waiting["w1"].attempts == n, f"attempt {n} recorded")
        h.clock.now = NOW + 4
        h.operator_limit("h1", 5000.0)
        h.state("a1", "h1", 1000.1)
        await retry.put(key=None, value=b"", partition=0)
        await until(lambda: h.producer.queued("a1"), "w1 queued")
    dispatched = h.producer.decisions()[-1]
    assert (dispatched.outcome, dispatched.attempt) == (DecisionOutcome.DISPATCHED, 4)


@in_loop
async def test_a_rebalance_forgets_the_dedupe_index_of_every_partition(tmp_path):
    # on_revoked cleared the waiting index only: the dedupe index kept partitions that had
    # moved to another worker, and this one went on deleting their `dispatched` rows.
    h = build(tmp_path)
    two_hosts(h)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"j1", value=submission("j1"), partition=4, timestamp=NOW)
        await until(lambda: h.producer.queued("b1"), "j1 queued")
    state = h.pipeline.dispatch_state
    assert state.dedupe.expired(4, before=NOW + 1) == ["j1"]
    state.dedupe.add(4, "j1", NOW)
    await h.pipeline.app.on_partitions_revoked.send(revoked=set())
    assert state.dedupe.expired(4, before=NOW + 1) == []
    assert not state.waiting_index.built(4)


@in_loop
async def test_a_vm_that_left_under_a_cached_snapshot_makes_the_job_wait_not_the_agent_die(
    tmp_path,
):
    # The chosen VM's registration was gone (a LookupError killed the agent); now the job
    # waits and is decided again over a newer snapshot.
    h = build(tmp_path)
    two_hosts(h)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"j1", value=submission("j1"), timestamp=NOW)
        await until(lambda: h.producer.queued("b1"), "j1 queued (the snapshot is now cached)")
        h.view.apply("vms", b"b1", None)  # b1 deregistered; the cached snapshot still has it
        await agent.put(key=b"j2", value=submission("j2"), timestamp=NOW)
        await until(lambda: "j2" in h.waiting, "j2 stored as waiting")
        await agent.put(key=b"j3", value=submission("j3"), timestamp=NOW)
        await until(lambda: "j3" in h.waiting, "the agent still runs")
    decision = h.producer.decisions()[1]
    assert decision.outcome is DecisionOutcome.WAITING
    assert decision.reason == "chosen VM b1 left the fleet; deciding again"
    assert len(h.producer.queued("b1")) == 1
