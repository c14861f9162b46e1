"""The output chain: outboxes reach the broker in the order they were made, phase by phase, and
a batch's offsets are committed only after its records (and every earlier batch's)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from pipeline.dispatch.core import Outbox, Record
from pipeline.dispatch.outputs import OutputChain


def outbox(tag: str) -> Outbox:
    return Outbox(
        decisions=[Record("decisions", tag.encode(), b"d")],
        first=[Record("job-status", tag.encode(), b"s")],
        then=[Record("queue", tag.encode(), b"q")],
    )


class FakeBroker:
    """Acknowledges a produce when the test releases it; records what happened, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.gates: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
        self.fail_next: Exception | None = None

    async def produce(self, records: Sequence[Record]) -> None:
        name = ",".join(f"{r.topic}:{r.key.decode()}" for r in records if r.key)
        self.log.append(f"send {name}")
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.gates.put(gate)
        await gate
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.log.append(f"acked {name}")

    async def commit(self, offsets: Mapping[str, int]) -> None:
        self.log.append(f"commit {dict(offsets)}")

    async def ack(self, count: int = 1) -> None:
        for _ in range(count):
            gate = await asyncio.wait_for(self.gates.get(), 5)
            gate.set_result(None)


def test_each_phase_is_acknowledged_before_the_next_and_the_offsets_after_all() -> None:
    async def run() -> list[str]:
        broker = FakeBroker()
        chain: OutputChain[str] = OutputChain(broker.produce, broker.commit)
        done = chain.submit(outbox("a"), {"jobs-0": 10})
        await broker.ack(3)
        await asyncio.wait_for(done, 5)
        return broker.log

    assert asyncio.run(run()) == [
        "send decisions:a",
        "acked decisions:a",
        "send job-status:a",
        "acked job-status:a",
        "send queue:a",
        "acked queue:a",
        "commit {'jobs-0': 10}",
    ]


def test_a_later_outbox_waits_for_the_earlier_one_to_be_committed() -> None:
    async def run() -> tuple[list[str], bool]:
        broker = FakeBroker()
        chain: OutputChain[str] = OutputChain(broker.produce, broker.commit)
        first = chain.submit(outbox("a"), {"jobs-0": 10})
        second = chain.submit(outbox("b"), {"jobs-0": 20})
        await broker.ack(1)  # a's decisions only
        await asyncio.sleep(0)
        waited = not second.done() and "send decisions:b" not in broker.log
        await broker.ack(5)
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        return broker.log, waited

    log, waited = asyncio.run(run())
    assert waited
    assert log.index("commit {'jobs-0': 10}") < log.index("send decisions:b")
    assert log[-1] == "commit {'jobs-0': 20}"


def test_the_submitter_is_not_held_while_its_outbox_is_produced() -> None:
    async def run() -> bool:
        broker = FakeBroker()
        chain: OutputChain[str] = OutputChain(broker.produce, broker.commit)
        done = chain.submit(outbox("a"), {"jobs-0": 1})
        returned = not done.done()  # submit() came back before any acknowledgement
        await broker.ack(3)
        await asyncio.wait_for(done, 5)
        return returned

    assert asyncio.run(run())


def test_a_failure_stops_everything_after_it_and_commits_nothing() -> None:
    async def run() -> tuple[list[str], BaseException | None, BaseException | None]:
        broker = FakeBroker()
        chain: OutputChain[str] = OutputChain(broker.produce, broker.commit)
        broker.fail_next = RuntimeError("the producer broke")
        first = chain.submit(outbox("a"), {"jobs-0": 10})
        second = chain.submit(outbox("b"), {"jobs-0": 20})
        await broker.ack(1)
        results = await asyncio.gather(first, second, return_exceptions=True)
        return broker.log, results[0], results[1]

    log, first, second = asyncio.run(run())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert log == ["send decisions:a"]  # nothing of b was sent, no offset committed


def test_an_empty_phase_is_skipped_and_offsets_alone_are_committed_in_turn() -> None:
    async def run() -> list[str]:
        broker = FakeBroker()
        chain: OutputChain[str] = OutputChain(broker.produce, broker.commit)
        first = chain.submit(Outbox(then=[Record("queue", b"a", b"q")]), {"jobs-0": 1})
        second = chain.submit(Outbox(), {"jobs-1": 5})  # a batch of duplicates: nothing to send
        await broker.ack(1)
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        await chain.drain()
        return broker.log

    assert asyncio.run(run()) == [
        "send queue:a",
        "acked queue:a",
        "commit {'jobs-0': 1}",
        "commit {'jobs-1': 5}",
    ]


def test_close_gives_up_what_is_not_acknowledged_in_time_without_committing() -> None:
    async def run() -> tuple[list[str], bool]:
        broker = FakeBroker()
        chain: OutputChain[str] = OutputChain(broker.produce, broker.commit)
        done = chain.submit(outbox("a"), {"jobs-0": 10})
        await asyncio.sleep(0)
        await chain.close(timeout_s=0.05)  # the broker never answers
        return broker.log, done.cancelled()

    log, cancelled = asyncio.run(run())
    assert cancelled
    assert not any(line.startswith("commit") for line in log)


def test_close_waits_for_what_lands_in_time() -> None:
    async def run() -> list[str]:
        broker = FakeBroker()
        chain: OutputChain[str] = OutputChain(broker.produce, broker.commit)
        chain.submit(outbox("a"), {"jobs-0": 10})

        async def answer() -> None:
            await broker.ack(3)

        answering = asyncio.ensure_future(answer())
        await chain.close(timeout_s=5)
        await answering
        return broker.log

    assert asyncio.run(run())[-1] == "commit {'jobs-0': 10}"
