"""Built-in handlers and loading MODULE:FUNCTION (producers.guest.handlers)."""

from __future__ import annotations

import pytest

from pipeline.events import QueuedJob
from producers.errors import HandlerError
from producers.guest import handlers
from producers.guest.handlers import BUILTIN_HANDLERS, IO_BATCH_OPS, io_batches, load_handler
from producers.guest.io import IoResult, MeteredIoChannel


class CountingIo:
    def __init__(self) -> None:
        self.requests: list[tuple[int, str]] = []

    def request(self, ops: int, kind: str = "block_rd") -> IoResult:
        self.requests.append((ops, kind))
        return IoResult(ops, 0.0)

    def close(self) -> None:
        pass


def job(job_type: str, payload: dict | None = None) -> QueuedJob:
    return QueuedJob(
        job_id="j1", job_type=job_type, payload=payload or {}, vm_id="vm1", host_id="h1",
        submitted_at=1.0, dispatched_at=2.0, policy="test",
    )  # fmt: skip


def test_io_heavy_paces_its_io_over_its_run_in_batches() -> None:
    io = CountingIo()
    result = BUILTIN_HANDLERS["io-heavy"](job("io-heavy", {"io_ops": 101, "cpu_ms": 0}), io)
    # 101 ops in at most 25 per round trip: 5 batches of 21 or 20, reads and writes alternating.
    assert io.requests == [
        (21, "block_rd"),
        (20, "block_wr"),
        (20, "block_rd"),
        (20, "block_wr"),
        (20, "block_rd"),
    ]
    assert result is not None and result["io_ops"] == 101


def test_batches_cover_every_op_and_none_is_larger_than_the_cap() -> None:
    for ops in (0, 1, 24, 25, 26, 200, 999):
        batches = io_batches(ops)
        assert sum(batches) == ops
        assert all(0 < b <= IO_BATCH_OPS for b in batches)
        assert not batches or max(batches) - min(batches) <= 1


def test_the_cpu_is_spread_between_the_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(handlers, "spin_cpu", lambda ms: calls.append(("cpu", ms)))

    class RecordingIo(CountingIo):
        def request(self, ops: int, kind: str = "block_rd") -> IoResult:
            calls.append(("io", ops))
            return super().request(ops, kind)

    BUILTIN_HANDLERS["mixed"](job("mixed", {"io_ops": 50, "cpu_ms": 10}), RecordingIo())
    assert calls == [("io", 25), ("cpu", 5.0), ("io", 25), ("cpu", 5.0)]


def test_defaults_differ_by_kind() -> None:
    totals = {}
    for name, handler in BUILTIN_HANDLERS.items():
        io = CountingIo()
        handler(job(name, {"cpu_ms": 0}), io)
        totals[name] = sum(ops for ops, _ in io.requests)
    assert totals["io-heavy"] > totals["mixed"] > totals["cpu-heavy"] > 0


@pytest.mark.parametrize("payload", [{"io_ops": -1}, {"io_ops": "many"}, {"cpu_ms": True}])
def test_bad_payload_raises_naming_the_field(payload: dict) -> None:
    with pytest.raises(ValueError, match=r"payload\.(io_ops|cpu_ms)"):
        BUILTIN_HANDLERS["mixed"](job("mixed", payload), CountingIo())


def test_metered_channel_counts_ops() -> None:
    metered = MeteredIoChannel(CountingIo())
    BUILTIN_HANDLERS["cpu-heavy"](job("cpu-heavy", {"cpu_ms": 0, "io_ops": 6}), metered)
    assert metered.ops == 6


def test_load_builtin_and_module_function() -> None:
    assert load_handler("io-heavy") is BUILTIN_HANDLERS["io-heavy"]
    assert load_handler("producers.guest.handlers:mixed") is BUILTIN_HANDLERS["mixed"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nothing", "expected io-heavy, cpu-heavy, mixed or MODULE:FUNCTION"),
        ("no_such_module_xyz:f", "cannot import no_such_module_xyz"),
        ("producers.guest.handlers:nope", "has no function nope"),
    ],
)
def test_bad_handler_is_refused_naming_it(spec: str, message: str) -> None:
    with pytest.raises(HandlerError, match=message):
        load_handler(spec)
