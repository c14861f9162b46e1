"""The Faust agents of `pipeline.app`, driven with `agent.test_context()` and no broker.

Every test builds its own app (`memory://` tables, a fake clock, a seeded generator) and swaps
the app's Kafka producer for `RecordingProducer`: Faust's own `Topic.send` still runs (topic
names, raw serialisers, the changelog of every table write), and what it would have produced is
recorded instead. The fleet view is fed by hand (`view.apply`, as FleetConsumer would) and marked
caught up with `fleet.ready.set()`.

Two things about `test_context()` in faust-streaming 0.15.3 shape these tests:

- `put()` stamps a message with the agent's source topic name, but the `vm_stats` agent reads
  *three* topics (io-samples, completions, decisions) through one Topic, which has no single
  name, so every message says it came from `<internal>`; the agent tells its inputs apart by
  `message.topic`. `put_from()` therefore puts through the same wrapper with the message's
  topic set to the one a real consumer would report.
- `put()` returns once the stream has *yielded* the value, before the agent body has handled
  it; `until()` yields to the loop (no timed sleep) until the expected effect is there.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import RecordMetadata

from pipeline.app import Pipeline, create_app
from pipeline.events import (
    DeadLetter,
    DecisionOutcome,
    DispatchDecision,
    HostRegistration,
    IoCounters,
    IoSample,
    JobCompletion,
    JobSubmission,
    LimitField,
    LimitScope,
    LimitSetting,
    LimitSource,
    QueuedJob,
    VmRegistration,
    VmState,
)
from pipeline.settings import KafkaSettings, PipelineSettings

NOW = 1_000.0
PREFIX = "t."


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingProducer:
    """The app's producer for a unit test: records every record Faust would produce."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.changelog: list[Any] = []  # FutureMessages of table writes (send_soon)

    async def maybe_start(self) -> None:
        pass

    def send_soon(self, fut: Any) -> None:
        self.changelog.append(fut)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> asyncio.Future:
        self.sent.append((topic, key, value, partition))
        done = asyncio.get_running_loop().create_future()
        done.set_result(
            RecordMetadata(
                topic=topic,
                partition=partition or 0,
                topic_partition=TP(topic, partition or 0),
                offset=len(self.sent) - 1,
            )
        )
        return done

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> RecordMetadata:
        return (await self.send(*args, **kwargs)).result()

    def changelog_of(self, table: str) -> list[tuple[int | None, bytes | None, bool]]:
        """(partition, key, deleted) of every changelog record of one table, in order."""
        return [
            (fut.message.partition, fut.message.key, fut.message.value is None)
            for fut in self.changelog
            if fut.message.channel.get_topic_name().endswith(f"-{table}-changelog")
        ]

    def on(self, logical: str) -> list[tuple[bytes | None, bytes]]:
        """(key, value) of every record sent to one topic, in order."""
        name = PREFIX + logical
        return [(key, value) for topic, key, value, _ in self.sent if topic == name]

    def decisions(self) -> list[DispatchDecision]:
        return [DispatchDecision.from_bytes(value) for _, value in self.on("decisions")]

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.from_bytes(value) for _, value in self.on("dead-letters")]

    def queued(self, vm_id: str) -> list[QueuedJob]:
        return [QueuedJob.from_bytes(value) for _, value in self.on(f"queue.{vm_id}")]


class Harness:
    def __init__(self, pipeline: Pipeline, clock: FakeClock, producer: RecordingProducer) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self.producer = producer
        self.view = pipeline.view
        self.agents = {
            name.rsplit(".", 1)[-1]: agent for name, agent in pipeline.app.agents.items()
        }

    @property
    def waiting(self) -> dict[str, Any]:
        return dict(self.pipeline.tables["waiting_jobs"].items())

    @property
    def dispatched(self) -> dict[str, Any]:
        return dict(self.pipeline.tables["dispatched"].items())

    # --- the fleet, as FleetConsumer would apply it ------------------------------------------

    def host(self, host_id: str, io_limit: float | None = None) -> None:
        host = HostRegistration(
            host_id=host_id, io_limit_ops_per_s=io_limit, registered_at=self.clock.now
        )
        self.view.apply("hosts", host.key(), host.to_bytes())

    def vm(self, vm_id: str, host_id: str, job_type: str = "io") -> None:
        vm = VmRegistration(
            vm_id=vm_id,
            host_id=host_id,
            job_type=job_type,
            queue_topic=f"{PREFIX}queue.{vm_id}",
            registered_at=self.clock.now,
        )
        self.view.apply("vms", vm.key(), vm.to_bytes())

    def state(self, vm_id: str, host_id: str, io_ops_per_s: float) -> None:
        """A fresh vm-state record: sampled now, 100 I/O per job, and a VM that has proved it
        clears jobs fast (1 job/s at 1% busy: 100 jobs/s while busy), so io-aware's backlog
        cap (what it clears within the horizon) is far above what these tests send."""
        state = VmState(
            vm_id=vm_id,
            host_id=host_id,
            io_ops_per_s=io_ops_per_s,
            io_per_job=100.0,
            load_jobs_per_s=1.0,
            busy_fraction=0.01,
            last_telemetry_at=self.clock.now,
            updated_at=self.clock.now,
        )
        self.view.apply("vm-state", state.key(), state.to_bytes())

    def operator_limit(self, host_id: str, value: float | None) -> None:
        setting = LimitSetting(
            scope=LimitScope.HOST,
            target_id=host_id,
            field=LimitField.IO_LIMIT,
            source=LimitSource.OPERATOR,
            value=value,
            set_at=self.clock.now,
        )
        self.view.apply("limits", setting.key(), setting.to_bytes())

    def ready(self) -> None:
        self.pipeline.fleet.ready.set()


def build(tmp_path: Path, stats_batch_max: int = 1) -> Harness:
    """A fresh app; call inside the test's event loop (Faust binds the running loop).

    `vm_stats` takes one event per batch unless told otherwise, so that each `put` has its
    effect before the next (its batches close on size here, never on `within`: no timed waits).
    """
    clock = FakeClock()
    pipeline = create_app(
        KafkaSettings(topic_prefix=PREFIX),
        PipelineSettings(
            store="memory://",
            app_id=f"test-agents-{uuid.uuid4().hex[:8]}",
            data_dir=str(tmp_path / "data"),
            stale_after_s=3.0,
            horizon_s=5.0,
            vm_state_interval_s=0.25,
            stats_batch_max=stats_batch_max,
        ),
        clock=clock,
        rng=random.Random(1),
    )
    producer = RecordingProducer()
    pipeline.app.producer = producer
    return Harness(pipeline, clock, producer)


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(predicate: Callable[[], Any], what: str) -> None:
    """Yield to the event loop until `predicate()` holds; fail if the agent never gets there."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0)  # a turn of the loop, not a wait for time
    raise AssertionError(f"the agent did not get to: {what}")


async def put_from(agent: Any, topic: str, key: bytes | None, value: bytes, **kw: Any) -> None:
    """`agent.put()` with the message stamped as coming from `topic` (see the module doc)."""
    make = agent.to_message

    def to_message(*args: Any, **kwargs: Any) -> Any:
        message = make(*args, **kwargs)
        message.topic = topic
        return message

    agent.to_message = to_message
    try:
        await agent.put(key=key, value=value, **kw)
    finally:
        del agent.to_message


def submission(job_id: str, job_type: str = "io", **fields: Any) -> bytes:
    return JobSubmission(job_id=job_id, job_type=job_type, **fields).to_bytes()


def two_hosts(h: Harness) -> None:
    """h1 at its limit (1000 of 1000 ops/s: not under it), h2 well under (100 of 1000)."""
    h.host("h1", io_limit=1000.0)
    h.host("h2", io_limit=1000.0)
    h.vm("a1", "h1")
    h.vm("b1", "h2")
    h.state("a1", "h1", 1000.0)
    h.state("b1", "h2", 100.0)


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
    assert h.dispatched["j1"]["vm_id"] == "b1"
    assert h.dispatched["j1"]["partition"] == 3
    assert h.pipeline.counts == {"dead_letters": 1, "dispatched": 1}


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
    h.state("a1", "h1", 1000.0)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"w1", value=submission("w1"), partition=2, timestamp=NOW)
        await until(lambda: h.waiting, "w1 stored as waiting")
        await until(lambda: h.producer.decisions(), "the waiting decision")

    assert h.waiting["w1"]["partition"] == 2
    assert h.waiting["w1"]["waiting_since"] == NOW
    assert h.waiting["w1"]["attempts"] == 1
    [waiting] = h.producer.decisions()
    assert waiting.outcome is DecisionOutcome.WAITING
    assert waiting.reason == "no eligible host among 1 candidate: 1 over limit"
    assert [job.job_id for job in h.pipeline.waiting_index.by_type(2)["io"]] == ["w1"]
    assert h.producer.queued("a1") == []

    h.clock.now = NOW + 1
    h.state("a1", "h1", 1000.0)  # still reporting, still at 1000 ops/s
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
    assert h.pipeline.waiting_index.count() == 0
    assert h.dispatched["w1"]["partition"] == 2
    # The tick's stream context is partition 2's, so the writes land in the job's changelog
    # partition (a restored worker would otherwise resurrect or lose the job).
    assert h.producer.changelog_of("waiting_jobs") == [(2, b'"w1"', False), (2, b'"w1"', True)]
    assert h.producer.changelog_of("dispatched") == [(2, b'"w1"', False)]


@in_loop
async def test_a_tick_for_another_partition_leaves_a_waiting_job_alone(tmp_path):
    h = build(tmp_path)
    h.host("h1", io_limit=1000.0)
    h.vm("a1", "h1")
    h.state("a1", "h1", 1000.0)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"w1", value=submission("w1"), partition=2, timestamp=NOW)
        await until(lambda: h.producer.decisions(), "the waiting decision")
    h.operator_limit("h1", 5000.0)
    h.pipeline.waiting_index.clear()  # as after a rebalance: rebuilt from the table per tick
    async with h.agents["retry"].test_context() as retry:
        await retry.put(key=None, value=b"", partition=1)
        await retry.put(key=None, value=b"", partition=1)  # the first one is surely handled
        await until(lambda: h.pipeline.waiting_index.built(1), "partition 1's index")

    assert h.producer.queued("a1") == []
    assert list(h.waiting) == ["w1"]
    assert not h.pipeline.waiting_index.built(2)


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
    h.state("a1", "h1", 1000.0)
    h.ready()
    late = submission("late", submitted_at=NOW, deadline_s=2.0)
    async with h.agents["dispatch"].test_context() as agent:
        # Same waiting_since: "first" is tried first (job id order) and blocks its type.
        await agent.put(key=b"first", value=submission("first"), partition=0, timestamp=NOW)
        await agent.put(key=b"late", value=late, partition=0, timestamp=NOW)
        await until(lambda: len(h.waiting) == 2, "both stored as waiting")

    h.clock.now = NOW + 2.5
    h.state("a1", "h1", 1000.0)
    async with h.agents["retry"].test_context() as retry:
        await retry.put(key=None, value=b"", partition=0)
        await until(lambda: h.producer.dead_letters(), "the dead letter of late")

    expired = h.producer.decisions()[-1]
    assert (expired.job_id, expired.outcome) == ("late", DecisionOutcome.EXPIRED)
    assert expired.reason == "deadline passed: 0.5s after submitted_at + deadline_s"
    assert expired.attempt == 2
    [letter] = h.producer.dead_letters()
    assert (letter.job_id, letter.reason) == ("late", expired.reason)
    assert letter.source_partition is None  # decided by the retry, not from a message
    assert list(h.waiting) == ["first"]
    assert [job.job_id for job in h.pipeline.waiting_index.by_type(0)["io"]] == ["first"]


@in_loop
async def test_a_job_type_with_no_eligible_host_does_not_hold_up_another_type(tmp_path):
    h = build(tmp_path)
    h.host("h1", io_limit=1000.0)
    h.host("h2", io_limit=1000.0)
    h.vm("a1", "h1", job_type="io")
    h.vm("c1", "h2", job_type="cpu")
    h.state("a1", "h1", 1000.0)
    h.state("c1", "h2", 1000.0)
    h.ready()
    async with h.agents["dispatch"].test_context() as agent:
        await agent.put(key=b"io1", value=submission("io1", "io"), partition=0, timestamp=NOW)
        await agent.put(key=b"cpu1", value=submission("cpu1", "cpu"), partition=0, timestamp=NOW)
        await until(lambda: len(h.waiting) == 2, "both stored as waiting")

    h.clock.now = NOW + 1  # past the snapshot cache's min_rebuild_s
    h.state("a1", "h1", 1000.0)
    h.state("c1", "h2", 1000.0)
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


# --- vm_stats ---------------------------------------------------------------------------------


def io_sample(vm_id: str, at: float, io_ops: int, host_id: str = "h1") -> IoSample:
    return IoSample(
        host_id=host_id,
        vm_id=vm_id,
        sampled_at=at,
        interval_s=1.0,
        io_ops=io_ops,
        counters=IoCounters(block_rd_reqs=io_ops),
    )


def completion(vm_id: str, job_id: str, finished_at: float) -> JobCompletion:
    return JobCompletion(
        job_id=job_id,
        job_type="io",
        vm_id=vm_id,
        host_id="h1",
        submitted_at=finished_at - 1,
        dispatched_at=finished_at - 0.9,
        started_at=finished_at - 0.5,
        finished_at=finished_at,
        outcome="succeeded",
    )


def dispatched_decision(vm_id: str, job_id: str, at: float) -> DispatchDecision:
    return DispatchDecision(
        job_id=job_id,
        job_type="io",
        decided_at=at,
        policy="io-aware",
        outcome=DecisionOutcome.DISPATCHED,
        vm_id=vm_id,
        host_id="h1",
        reason="test",
    )


@in_loop
async def test_without_a_topic_test_context_messages_do_not_say_which_input_they_came_from(
    tmp_path,
):
    # Why put_from() exists: if Faust ever names the source, drop it and use put().
    h = build(tmp_path)
    async with h.agents["vm_stats"].test_context() as agent:
        assert agent.to_message(b"a1", b"{}").topic == "<internal>"
    async with h.agents["dispatch"].test_context() as agent:
        assert agent.to_message(b"j1", b"{}").topic == "t.jobs"


@in_loop
async def test_vm_stats_counts_samples_completions_and_dispatches_into_vm_state(tmp_path):
    h = build(tmp_path)
    async with h.agents["vm_stats"].test_context() as agent:
        for second in range(5):  # 500 ops in each second 1000..1004
            h.clock.now = NOW + second
            sample = io_sample("a1", NOW + second, 500)
            await put_from(agent, "t.io-samples", b"a1", sample.to_bytes())
            published = second + 1
            await until(lambda n=published: len(h.producer.on("vm-state")) == n, "vm-state update")
        state = VmState.from_bytes(h.producer.on("vm-state")[-1][1])
        assert (state.vm_id, state.host_id) == ("a1", "h1")
        assert state.io_ops_per_s == 500.0  # 2500 ops over the 5 s rate window
        assert state.last_telemetry_at == NOW + 4
        assert state.outstanding_jobs == 0

        h.clock.now = NOW + 5
        decision = dispatched_decision("a1", "j1", NOW + 5)
        await put_from(agent, "t.decisions", b"a1", decision.to_bytes())
        await until(lambda: len(h.producer.on("vm-state")) == 6, "the dispatch counted")
        state = VmState.from_bytes(h.producer.on("vm-state")[-1][1])
        assert (state.outstanding_jobs, state.last_decision_at) == (1, NOW + 5)

        h.clock.now = NOW + 6
        done = completion("a1", "j1", NOW + 6)
        await put_from(agent, "t.completions", b"a1", done.to_bytes())
        await until(lambda: len(h.producer.on("vm-state")) == 7, "the completion counted")
        state = VmState.from_bytes(h.producer.on("vm-state")[-1][1])
        assert state.outstanding_jobs == 0
        assert state.last_completion_at == NOW + 6

    assert h.producer.on("vm-state")[-1][0] == b"a1"
    assert h.pipeline.tables["vm_stats"]["a1"]["host_id"] == "h1"
    assert h.producer.dead_letters() == []


@in_loop
async def test_vm_stats_writes_each_vm_once_per_batch_to_the_partition_of_its_events(tmp_path):
    # Faust cannot write a table from a batch on its own (faust-streaming#497): each row goes
    # to the partition of the events that changed it (pipeline.faust_compat.writing_for).
    h = build(tmp_path, stats_batch_max=4)
    h.clock.now = NOW + 2
    async with h.agents["vm_stats"].test_context() as agent:
        for second in range(3):
            sample = io_sample("a1", NOW + second, 100)
            await put_from(agent, "t.io-samples", b"a1", sample.to_bytes(), partition=2)
        await put_from(
            agent, "t.io-samples", b"b1", io_sample("b1", NOW, 7).to_bytes(), partition=5
        )
        await until(lambda: len(h.producer.on("vm-state")) == 2, "one vm-state per VM")
    assert h.producer.changelog_of("vm_stats") == [(2, b'"a1"', False), (5, b'"b1"', False)]
    # Each record is the row as one JSON object (pipeline.json_table encodes it once).
    rows = [json.loads(fut.message.value) for fut in h.producer.changelog]
    assert [(row["vm_id"], row["last_telemetry_at"]) for row in rows] == [
        ("a1", NOW + 2),
        ("b1", NOW),
    ]
    a1, b1 = (VmState.from_bytes(value) for _, value in h.producer.on("vm-state"))
    # 300 ops over the 3 s since a1 was first sampled: all three samples were counted
    assert (a1.vm_id, a1.last_telemetry_at, a1.io_ops_per_s) == ("a1", NOW + 2, 100.0)
    assert (b1.vm_id, b1.last_telemetry_at) == ("b1", NOW)
    assert h.pipeline.tables["vm_stats"]["a1"]["last_telemetry_at"] == NOW + 2


@in_loop
async def test_vm_stats_publishes_a_vm_at_most_once_per_interval(tmp_path):
    h = build(tmp_path)
    async with h.agents["vm_stats"].test_context() as agent:
        written = h.producer.changelog_of
        await put_from(agent, "t.io-samples", b"a1", io_sample("a1", NOW, 10).to_bytes())
        await until(lambda: len(h.producer.on("vm-state")) == 1, "the first vm-state update")
        h.clock.now = NOW + 0.2  # under vm_state_interval_s (0.25 s): held back
        await put_from(agent, "t.io-samples", b"a1", io_sample("a1", NOW + 0.1, 10).to_bytes())
        await until(lambda: len(written("vm_stats")) == 2, "the second sample counted")
        h.clock.now = NOW + 0.25
        await put_from(agent, "t.io-samples", b"a1", io_sample("a1", NOW + 0.2, 10).to_bytes())
        await until(lambda: len(h.producer.on("vm-state")) == 2, "the second vm-state update")
    published = [VmState.from_bytes(value) for _, value in h.producer.on("vm-state")]
    assert [s.updated_at for s in published] == [NOW, NOW + 0.25]
    assert published[1].last_telemetry_at == NOW + 0.2


@in_loop
async def test_vm_stats_ignores_waiting_decisions_and_redelivered_samples(tmp_path):
    h = build(tmp_path)
    waiting = DispatchDecision(
        job_id="w1",
        job_type="io",
        decided_at=NOW,
        policy="io-aware",
        outcome=DecisionOutcome.WAITING,
        reason="no eligible host",
    )
    async with h.agents["vm_stats"].test_context() as agent:
        await put_from(agent, "t.io-samples", b"a1", io_sample("a1", NOW, 10).to_bytes())
        await put_from(agent, "t.decisions", b"w1", waiting.to_bytes())
        h.clock.now = NOW + 1
        await put_from(agent, "t.io-samples", b"a1", io_sample("a1", NOW, 10).to_bytes())
        await put_from(agent, "t.io-samples", b"a2", io_sample("a2", NOW, 10).to_bytes())
        await until(lambda: len(h.producer.on("vm-state")) == 2, "a2's vm-state")
    assert [key for key, _ in h.producer.on("vm-state")] == [b"a1", b"a2"]
    assert "w1" not in h.pipeline.tables["vm_stats"]
    assert h.producer.dead_letters() == []


@pytest.mark.parametrize(
    ("topic", "key", "value", "reason"),
    [
        ("t.io-samples", b"a1", b"[]", "IoSample: expected a JSON object"),
        (
            "t.io-samples",
            b"a1",
            json.dumps({"vm_id": "a1", "host_id": "h1"}).encode(),
            "IoSample: sampled_at: Field required",
        ),
        ("t.completions", b"a1", b"nope", "JobCompletion: not JSON"),
        ("t.decisions", b"a1", b"{}", "DispatchDecision: job_id: Field required"),
        (
            "t.io-samples",
            b"other",
            io_sample("a1", NOW, 10).to_bytes(),
            "message key b'other' is not its vm_id 'a1'",
        ),
    ],
)
@in_loop
async def test_vm_stats_dead_letters_bad_input_and_goes_on(tmp_path, topic, key, value, reason):
    h = build(tmp_path)
    async with h.agents["vm_stats"].test_context() as agent:
        await put_from(agent, topic, key, value, partition=4)
        await put_from(agent, "t.io-samples", b"a9", io_sample("a9", NOW, 10).to_bytes())
        await until(lambda: h.producer.on("vm-state"), "the good sample after the bad one")
    [letter] = h.producer.dead_letters()
    assert letter.reason.startswith(reason)
    assert (letter.source_topic, letter.source_partition, letter.stage) == (topic, 4, "vm_stats")
    assert [k for k, _ in h.producer.on("vm-state")] == [b"a9"]
    assert list(h.pipeline.tables["vm_stats"]) == ["a9"]
