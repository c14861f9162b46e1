"""The `vm_stats` agent: io-samples + completions -> table `vm_stats` -> vm-state.

The paper's steps 2 and 3 as a Faust agent. Its state, named here and nowhere else:

- the `vm_stats` table (RocksDB + changelog), one `VmStats` row per VM of this worker's partitions;
- `rows`: the decoded rows of those VMs. This agent is their only writer, so the copy stays true
  until a rebalance (then it is dropped, see `on_revoked`) and the table is read and decoded
  once per VM, not once per batch;
- `last_published` / `unpublished`: at most one vm-state record per VM per
  `vm_state_interval_s`; the timer publishes what changed in between.

It takes its inputs in batches (`take_events`), writes each changed row once per batch, and
dead-letters what it cannot use (any decoding error, a key that is not the event's id). An
io-samples record is an `IoSample` (one VM) or a `HostSample` (a host's VMs of one partition):
a HostSample's entries are judged one by one, the good ones counted and the record
dead-lettered once with every refused entry's reason (`Read`).
Faust acks a batch only after this body has handled it, so at-least-once holds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import faust
from faust.types import TP, EventT

from pipeline.edge.json_table import JsonTable
from pipeline.edge.metrics import PipelineMetrics
from pipeline.edge.outputs import Outputs
from pipeline.errors import EventError, RowError
from pipeline.events import IoSample, JobCompletion, TelemetryReading, read_telemetry
from pipeline.fleet.view import FleetView
from pipeline.settings import PipelineSettings
from pipeline.stats.vm_stats import VmStats
from pipeline.stats.windows import WindowConfig
from pipeline.topics import Topics
from pipeline.topics.partitioning import partition_for_key

log = logging.getLogger(__name__)

#: How often a batch's samples for VMs the fleet view does not place are checked again.
RECHECK_S = 0.1
#: After a wait for registrations that did not come, the agent does not wait again for this
#: many times that wait's length: at most a tenth of its time goes to waiting for VMs nobody
#: registers. A stream of samples for unknown VMs (a misconfigured Dom0, or forged) would
#: otherwise hold every batch `stats_view_wait_s`, and the whole fleet's telemetry with it.
FUTILE_WAIT_BACKOFF = 9.0
#: VMs remembered as not placed after a wait (their inputs get one look, never a wait: a
#: VM Dom0 meters but cannot register, having no job type, sends a sample every interval).
UNPLACED_REMEMBERED = 65_536

#: The inputs, by logical topic name.
INPUTS = ("io-samples", "completions")


class VmSample(NamedTuple):
    """One VM's I/O sample as the agent counts it: an `IoSample`'s, or a `HostSample` entry's
    with the record's host and time (a HostSample's entries are counted from their validated
    `VmIo`s; an IoSample built for each cost more than the entry's validation)."""

    vm_id: str
    host_id: str
    sampled_at: float
    io_ops: int

    @classmethod
    def of(cls, sample: IoSample) -> VmSample:
        return cls(sample.vm_id, sample.host_id, sample.sampled_at, sample.io_ops)


StatsInput = VmSample | JobCompletion


def kind(item: StatsInput) -> str:
    """The input's event type, as refusals name it (a HostSample's entry is an IoSample)."""
    return "IoSample" if isinstance(item, VmSample) else type(item).__name__


@dataclass
class Read:
    """One input message as `StatsAgent.parse` read it: its inputs by VM, and what of it was
    refused (dead-lettered once, with every reason, after the batch)."""

    event: EventT
    #: Its place in the stream, so dead letters keep the inputs' order.
    order: int
    items: list[tuple[str, StatsInput]]
    refused: list[str] = field(default_factory=list)
    #: VM samples it carried, valid or not (an IoSample is one; completions none).
    vm_samples: int = 0
    #: A HostSample's host (None for the other inputs).
    host_id: str | None = None

    def reason(self) -> str:
        if self.host_id is None:  # a single input: its reason as it is
            return "; ".join(self.refused)
        whole = self.vm_samples
        kept = whole - len(self.refused)
        head = f"HostSample of {self.host_id}: {len(self.refused)} of {whole} VM entries refused"
        head += f", {kept} counted" if kept else " (none counted)"
        return f"{head}: " + "; ".join(self.refused)


class StatsAgent:
    """Keeps `vm_stats` and publishes `vm-state`; build it, then `register()` it on the app."""

    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        settings: PipelineSettings,
        outputs: Outputs,
        metrics: PipelineMetrics,
        clock: Callable[[], float],
        view: FleetView | None = None,
        view_ready: Callable[[], bool] = lambda: True,
        view_current: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        #: Where the fleet view says each VM runs (checked once it has caught up).
        self.view = view
        self.view_ready = view_ready
        #: Brings the fleet view up to date with its topics (True once it is, False if it
        #: could not be); asked before an event is refused for the VM's registration.
        self.view_current = view_current
        self.settings = settings
        self.windows: WindowConfig = settings.window_config()
        self.outputs = outputs
        self.metrics = metrics
        self.clock = clock
        self.table = JsonTable.declare(
            app,
            "vm_stats",
            topics.partitions("io-samples"),
            help="per-VM windows, io_per_job, in-flight jobs",
        )
        self._logical = {topics.name(name): name for name in INPUTS}
        self._source = outputs.raw_topic(*self._logical)
        self._vm_state_name = topics.name("vm-state")
        #: vm_id -> its vm-state partition (as Kafka's default partitioner picks it).
        self._vm_state_partition = functools.lru_cache(maxsize=65_536)(
            functools.partial(partition_for_key, partitions=topics.partitions("vm-state"))
        )
        #: io-samples' partition count: which partition each VM's samples belong to.
        self.partitions = topics.partitions("io-samples")
        #: vm_id -> its partition (murmur2 in Python costs ~6 µs a call; bounded, as ids
        #: come from outside).
        self._owner = functools.lru_cache(maxsize=65_536)(self._partition_of)
        self._order = 0
        self.rows: dict[str, VmStats] = {}
        self.last_published: dict[str, float] = {}
        self.unpublished: set[str] = set()
        #: Monotonic time before which a batch does not wait for registrations (see
        #: `FUTILE_WAIT_BACKOFF`); it still brings the view up to date once.
        self.impatient_until = 0.0
        #: VMs still not placed when a wait for them ended (oldest first, bounded).
        self.unplaced: OrderedDict[str, None] = OrderedDict()

    def register(self) -> StatsAgent:
        self.app.agent(self._source, name="vm_stats")(self.run)
        self.app.timer(self.settings.vm_state_interval_s, name="vm_state_flush")(self.flush)
        return self

    # --- the agent --------------------------------------------------------------------------

    async def run(self, stream: faust.StreamT) -> None:
        # In batches: each touched row is read, parsed, serialised and written (one changelog
        # record) once per batch rather than once per event; a VM sampled every second while
        # taking hundreds of jobs would otherwise rewrite its whole row for each.
        async for events in stream.take_events(
            self.settings.stats_batch_max, within=self.settings.stats_batch_s
        ):
            await self.handle(events)

    async def handle(self, events: list[EventT]) -> None:
        began_s = time.monotonic()
        # vm_id -> the row and the last event that changed it (its partition)
        changed: dict[str, tuple[VmStats, EventT]] = {}
        handled: Counter[str] = Counter()
        vm_samples = 0
        #: Inputs the fleet view places elsewhere or not at all, as it stands.
        unsure: list[tuple[Read, str, StatsInput]] = []
        #: Messages with something refused (a HostSample's entries, a misplaced input).
        partly: list[Read] = []
        # `misplaced()` inlined (a VM sample is a few µs): the view, if it judges yet
        view = self.view if self.view is not None and self.view_ready() else None
        for event in events:
            message = event.message
            handled[self._logical.get(message.topic, "other")] += 1
            try:
                read = self.parse(event)
            except EventError as exc:
                await self.outputs.dead_letter_message(message, str(exc), stage="vm_stats")
                view = self.view if self.view is not None and self.view_ready() else None
                continue
            vm_samples += read.vm_samples
            if read.refused:
                partly.append(read)
            for vm_id, item in read.items:
                if view is not None and view.registered_host(vm_id) != item.host_id:
                    unsure.append((read, vm_id, item))  # (misplaced: not None)
                    continue
                if self.unplaced:
                    self.unplaced.pop(vm_id, None)  # placed now: a later move gets its wait
                self._apply(changed, event, vm_id, item)
        if unsure:
            unsure, current = await self._recheck(unsure, changed)
            for read, vm_id, item in unsure:
                why = self.misplaced(vm_id, item) or "misplaced"
                if not current:
                    why += " (the fleet view could not be brought up to date to check again)"
                if not read.refused:
                    partly.append(read)
                read.refused.append(why)
        for read in sorted(partly, key=lambda r: r.order):
            await self.outputs.dead_letter_message(
                read.event.message, read.reason(), stage="vm_stats"
            )
        now = self.clock()
        await self.table.write_rows(
            (vm_id, row.to_json(), event) for vm_id, (row, event) in changed.items()
        )
        interval_s = self.settings.vm_state_interval_s
        producer = await self.app.maybe_start_producer()  # once: it is a stampede (a future)
        for vm_id, (row, _) in changed.items():
            if now - self.last_published.get(vm_id, 0.0) >= interval_s:
                await self.publish(vm_id, now, row, producer)
            else:
                self.unpublished.add(vm_id)
        # Counted with the time they took, together (no await between): /status never shows
        # samples read without the time spent reading them (a rate of 0 failed CI's bench).
        self.metrics.count_stats_events(handled, vm_samples)
        if vm_samples:
            self.metrics.vm_samples_read_between(began_s, time.monotonic())

    async def _recheck(
        self,
        unsure: list[tuple[Read, str, StatsInput]],
        changed: dict[str, tuple[VmStats, EventT]],
    ) -> tuple[list[tuple[Read, str, StatsInput]], bool]:
        """Apply the events whose VM the fleet view places, once it is up to date; what is left.

        A VM's first samples may be read before its registration: another topic, read by
        another consumer, and written by its Dom0 a moment later (two partitions' batches are
        acknowledged in no set order). So the view is brought up to date, and again every
        `RECHECK_S`, until every event's VM is placed or `stats_view_wait_s` has passed (one wait
        per batch, however many events in it are unsure). A wait that ends with VMs still
        unplaced makes the next batches impatient for `FUTILE_WAIT_BACKOFF` times its length,
        and those VMs' later inputs for good (`unplaced`, until the view places them): one
        look at the view brought up to date, then refused. Returns the events still
        misplaced, and whether the view could be brought up to date at all.
        """
        started = time.monotonic()
        patient = started >= self.impatient_until and any(
            vm_id not in self.unplaced for _, vm_id, _ in unsure
        )
        deadline = started + (self.settings.stats_view_wait_s if patient else 0.0)
        while True:
            current = self.view_current is not None and await self.view_current()
            left = []
            for read, vm_id, item in unsure:
                if self.misplaced(vm_id, item) is None:
                    self.unplaced.pop(vm_id, None)
                    self._apply(changed, read.event, vm_id, item)
                else:
                    left.append((read, vm_id, item))
            now = time.monotonic()
            if not left or not current or now >= deadline:
                for _, vm_id, _ in left if current else ():
                    self.unplaced[vm_id] = None
                    self.unplaced.move_to_end(vm_id)
                while len(self.unplaced) > UNPLACED_REMEMBERED:
                    self.unplaced.popitem(last=False)
                if left and patient:
                    self.impatient_until = now + FUTILE_WAIT_BACKOFF * (now - started)
                    log.warning(
                        "vm_stats: %d input(s) for VMs the fleet view does not place after "
                        "%.1fs; not waiting for registrations for the next %.0fs",
                        len(left),
                        now - started,
                        self.impatient_until - now,
                    )
                return left, current
            unsure = left
            await asyncio.sleep(RECHECK_S)

    def _apply(
        self,
        changed: dict[str, tuple[VmStats, EventT]],
        event: EventT,
        vm_id: str,
        item: StatsInput,
    ) -> None:
        row = self.row(vm_id)
        if apply(row, item):
            changed[vm_id] = (row, event)
            if isinstance(item, JobCompletion):  # once per job: apply() skips repeats
                self.metrics.job_finished(item.job_type, item.response_s, item.finished_at)

    def parse(self, event: EventT) -> Read:
        """What one input message says, by VM; EventError if none of it is usable.

        An io-samples message is an `IoSample` or a `HostSample` (`pipeline.events.
        read_telemetry`). A HostSample's bad entries are refused one by one (`Read.refused`)
        and its good ones stand: one VM's unreadable counters say nothing against its
        neighbours'. So is an entry whose VM belongs to another io-samples partition than the
        record's: counted here it would split the VM's row between two partitions (and two
        workers). The record itself must be keyed by its host_id.

        An event stamped further in the future than `max_clock_skew_s` is refused: one sample
        from an hour ahead would otherwise move the fleet's telemetry watermark and make every
        other host look stale, and one completion from next year would reset a VM's windows.
        """
        message = event.message
        self._order += 1
        topic = self._logical.get(message.topic)
        if topic == "io-samples":
            reading = read_telemetry(message.value)
            if reading.sample is None:
                return self._host_sample(event, reading)
            item: StatsInput = VmSample.of(reading.sample)
            at = reading.sample.sampled_at
        elif topic == "completions":
            item = JobCompletion.from_bytes(message.value)
            at = item.finished_at
        else:
            raise EventError(f"vm_stats: not an input topic: {message.topic}")
        vm_id = item.vm_id
        if message.key is not None and message.key != vm_id.encode():
            raise EventError(
                f"message key {message.key[:100]!r} is not its vm_id {vm_id!r}; key by vm_id"
            )
        self._refuse_future(kind(item), at)
        return Read(event, self._order, [(vm_id, item)], vm_samples=int(topic == "io-samples"))

    def _host_sample(self, event: EventT, reading: TelemetryReading) -> Read:
        message = event.message
        host_id = reading.host_id or ""
        sampled_at = reading.sampled_at or 0.0
        if message.key is not None and message.key != host_id.encode():
            raise EventError(
                f"HostSample: message key {message.key[:100]!r} is not its host_id "
                f"{host_id!r}; key by host_id"
            )
        self._refuse_future("HostSample", sampled_at)
        read = Read(
            event,
            self._order,
            [],
            refused=list(reading.refused),
            vm_samples=reading.entries,
            host_id=host_id,
        )
        items, refused, partition = read.items, read.refused, message.partition
        for vm in reading.vms:
            vm_id = vm.vm_id
            owner = self._owner(vm_id)
            if partition is not None and owner != partition:
                refused.append(
                    f"{vm_id}: its samples belong to partition {owner} of "
                    f"{message.topic} (its vm_id's), not {partition}"
                )
                continue
            items.append((vm_id, VmSample(vm_id, host_id, sampled_at, vm.io_ops)))
        return read

    def _partition_of(self, vm_id: str) -> int:
        return partition_for_key(vm_id, self.partitions)

    def _refuse_future(self, what: str, at: float) -> None:
        ahead_s = at - self.clock()
        if ahead_s > self.settings.max_clock_skew_s:
            raise EventError(
                f"{what}: stamped {ahead_s:.0f}s in the future "
                f"(more than VMLB_MAX_CLOCK_SKEW_S={self.settings.max_clock_skew_s:g})"
            )

    def misplaced(self, vm_id: str, item: StatsInput) -> str | None:
        """Why the fleet view says `item` cannot be about `vm_id`, or None.

        Once the fleet view has caught up, an event for a VM that is not registered, or that
        names another host than the VM's registration, is refused: a forged sample cannot
        move a VM to another host or create rows without limit. `handle` asks again after
        bringing the view up to date, so a VM's first samples (written after its
        registration, perhaps read before it) and a migration's are counted, not refused.
        """
        if self.view is None or not self.view_ready():
            return None
        registered = self.view.registered_host(vm_id)
        if registered is None:
            return f"{kind(item)}: VM {vm_id} is not registered"
        if registered != item.host_id:
            return f"{kind(item)}: VM {vm_id} is registered on {registered}, not on {item.host_id}"
        return None

    def row(self, vm_id: str) -> VmStats:
        """The VM's row, decoded once; an unreadable stored row is logged and started afresh."""
        row = self.rows.get(vm_id)
        if row is None:
            try:
                row = VmStats.from_dict(self.table.get(vm_id), vm_id, self.windows)
            except RowError as exc:
                log.error("%s; starting the row afresh", exc)
                self.metrics.unreadable_rows.labels(table="vm_stats").inc()
                row = VmStats(vm_id=vm_id, config=self.windows)
            self.rows[vm_id] = row
        return row

    # --- vm-state ---------------------------------------------------------------------------

    async def publish(
        self, vm_id: str, now: float, row: VmStats | None = None, producer: Any = None
    ) -> None:
        """Produce the VM's vm-state record: the bytes `row.state(now).to_bytes()` would give,
        built without validating them again (`VmStats.state_bytes`), straight to the producer
        (Faust's `Topic.send` builds a message, a future and serialises the key per record)
        and to the partition Kafka's default partitioner gives its key. Faust flushes the
        producer before it commits the offsets of the batch that changed the row."""
        row = row or self.rows.get(vm_id)
        self.unpublished.discard(vm_id)
        if row is None:  # not (or no longer) this worker's VM: its owner publishes it
            return
        if producer is None:
            producer = await self.app.maybe_start_producer()
        await producer.send(
            self._vm_state_name,
            vm_id.encode(),
            row.state_bytes(now),
            self._vm_state_partition(vm_id),
            None,
            None,
        )
        self.last_published[vm_id] = now

    async def flush(self) -> None:
        now = self.clock()
        if self.unpublished:
            producer = await self.app.maybe_start_producer()
            for vm_id in list(self.unpublished):
                await self.publish(vm_id, now, producer=producer)

    def on_revoked(self, revoked: set[TP]) -> None:
        # These partitions may move: re-read rows from the table when next needed.
        self.rows.clear()
        self.unpublished.clear()


def apply(row: VmStats, item: StatsInput) -> bool:
    """Apply one input to its VM's row; False if it changed nothing (a re-delivery)."""
    if isinstance(item, VmSample):
        return row.add_io(item.host_id, item.sampled_at, item.io_ops)
    return row.add_completion(item.job_id, item.finished_at, item.service_s)
