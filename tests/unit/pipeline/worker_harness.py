"""A worker for agent tests: driven with `agent.test_context()`, no broker.

Every test builds its own app (`memory://` tables, a fake clock, a seeded generator) and swaps
the app's Kafka producer for `RecordingProducer`: Faust's own `Topic.send` still runs (topic
names, raw serialisers, the changelog of every table write), and what it would have produced is
recorded instead. The fleet view is fed by hand (`view.apply`, as FleetConsumer would) and marked
caught up with `fleet.ready.set()`.

Two things about `test_context()` in faust-streaming 0.15.3 shape these tests:

- `put()` stamps a message with the agent's source topic name, but the `vm_stats` agent reads
  *two* topics (io-samples, completions) through one Topic, which has no single
  name, so every message says it came from `<internal>`; the agent tells its inputs apart by
  `message.topic`. `put_from()` therefore puts through the same wrapper with the message's
  topic set to the one a real consumer would report.
- `put()` returns once the stream has *yielded* the value, before the agent body has handled
  it; `until()` yields to the loop (no timed sleep) until the expected effect is there.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faust.types import TP
from faust.types.tuples import RecordMetadata

from pipeline.edge.json_table import JsonTable
from pipeline.events import (
    DeadLetter,
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
from pipeline.worker.app import create_app
from pipeline.worker.state import Pipeline

NOW = 1_000.0
PREFIX = "t."


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class ChangelogRecord:
    """A table's changelog record, however it was produced (Faust's buffer or `send`)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None


class RecordingProducer:
    """The app's producer for a unit test: records every record Faust would produce."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        #: Table writes: Faust's own (`send_soon`, a table's `__setitem__`) and those produced
        #: directly (`JsonTable.write_rows`), in order.
        self.changelog: list[ChangelogRecord] = []
        #: Records produced through `send` (their offsets).
        self.produced = 0

    async def maybe_start(self) -> None:
        pass

    def send_soon(self, fut: Any) -> None:
        message = fut.message
        self.changelog.append(
            ChangelogRecord(
                message.channel.get_topic_name(), message.key, message.value, message.partition
            )
        )

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
        self.produced += 1
        if topic.endswith("-changelog"):
            self.changelog.append(ChangelogRecord(topic, key, value, partition))
        else:
            self.sent.append((topic, key, value, partition))
        done = asyncio.get_running_loop().create_future()
        done.set_result(
            RecordMetadata(
                topic=topic,
                partition=partition or 0,
                topic_partition=TP(topic, partition or 0),
                offset=self.produced - 1,  # one offset sequence for all: enough for tests
            )
        )
        return done

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> RecordMetadata:
        return (await self.send(*args, **kwargs)).result()

    def changelog_of(self, table: str) -> list[tuple[int | None, bytes | None, bool]]:
        """(partition, key, deleted) of every changelog record of one table, in order."""
        return [
            (record.partition, record.key, record.value is None)
            for record in self.changelog
            if record.topic.endswith(f"-{table}-changelog")
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
        self.read_throughs = 0
        self.on_read_through: Callable[[], None] | None = None

    @property
    def vm_stats(self) -> JsonTable:
        return self.pipeline.stats.table

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
        """A fresh vm-state record: sampled now, 100 I/O per job, and a VM that has proved how
        long its jobs take (1 job/s at 10% busy: 0.1 s, so a job asks 1000 ops/s while it
        runs, one at a time under a 1000 ops/s limit), so io-aware's backlog cap (what it
        clears within the horizon) is far above what these tests send. Dom0 measuring more
        than the host's limit (`io_ops_per_s`) closes the host."""
        state = VmState(
            vm_id=vm_id,
            host_id=host_id,
            io_ops_per_s=io_ops_per_s,
            io_per_job=100.0,
            load_jobs_per_s=1.0,
            busy_fraction=0.1,
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

    async def read_through(self) -> bool:
        """What FleetConsumer.read_through_now does: here, run `on_read_through` (what the
        fleet topics held but the view had not read yet) and count the call."""
        self.read_throughs += 1
        if self.on_read_through is not None:
            self.on_read_through()
        return True


def build(tmp_path: Path, stats_batch_max: int = 1, store: str = "memory://") -> Harness:
    """A fresh app; call inside the test's event loop (Faust binds the running loop).

    `vm_stats` takes one event per batch unless told otherwise, so that each `put` has its
    effect before the next (its batches close on size here, never on `within`: no timed waits).
    """
    clock = FakeClock()
    pipeline = create_app(
        KafkaSettings(topic_prefix=PREFIX),
        PipelineSettings(
            store=store,
            app_id=f"test-agents-{uuid.uuid4().hex[:8]}",
            data_dir=str(tmp_path / "data"),
            stale_after_s=3.0,
            stats_view_wait_s=0.2,  # a sample for an unknown VM: a short real wait, then refused
            horizon_s=5.0,
            # Strict: a job waits for room however long it takes (these tests are about the
            # waiting itself, not about io-aware's hold).
            hold_s=float("inf"),
            vm_state_interval_s=0.25,
            stats_batch_max=stats_batch_max,
        ),
        clock=clock,
        rng=random.Random(1),
    )
    producer = RecordingProducer()
    pipeline.app.producer = producer
    # No broker: every VM's queue topic counts as existing (the service asks the cluster).
    pipeline.dispatcher.queue_ready = lambda topic: True
    harness = Harness(pipeline, clock, producer)
    # No FleetConsumer either: the view is as current as the test made it (`on_read_through`
    # lets a test feed it what "arrives" while the stats agent waits).
    pipeline.stats.view_current = harness.read_through
    return harness


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


async def until_settled(predicate: Callable[[], Any], what: str, timeout_s: float = 10.0) -> None:
    """`until`, for an agent that waits on purpose in real time (the stats agent re-checking
    samples it cannot place yet): poll every 10 ms, fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
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
    """h1 over its limit (Dom0 measures 1000.1 of 1000 ops/s), h2 well under (100 of 1000)."""
    h.host("h1", io_limit=1000.0)
    h.host("h2", io_limit=1000.0)
    h.vm("a1", "h1")
    h.vm("b1", "h2")
    h.state("a1", "h1", 1000.1)
    h.state("b1", "h2", 100.0)


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
