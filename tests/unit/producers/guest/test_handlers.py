"""Built-in handlers and loading MODULE:FUNCTION (producers.guest.handlers)."""

from __future__ import annotations

import pytest

from pipeline.events import QueuedJob
from producers.errors import HandlerError
from producers.guest.handlers import BUILTIN_HANDLERS, load_handler
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


def test_io_heavy_batches_its_io_in_two_round_trips() -> None:
    io = CountingIo()
    result = BUILTIN_HANDLERS["io-heavy"](job("io-heavy", {"io_ops": 401, "cpu_ms": 0}), io)
    assert io.requests == [(200, "block_rd"), (201, "block_wr")]
    assert result is not None and result["io_ops"] == 401


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
