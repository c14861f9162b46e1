"""Job handlers: what a guest does with a job. Built-ins, and loading `MODULE:FUNCTION`.

A handler is

    def handler(job: QueuedJob, io: IoChannel) -> dict | None

It does its I/O through `io.request(ops, kind)` (so an emulated host's channel meters it and a
saturated host slows it down) and returns a small result dict (logged) or None. A raised
exception makes the job's outcome `failed`, with the exception as its error text.

Built-ins, scaled by the job's payload:
- `io-heavy`: `io_ops` (default 200) I/O requests, half reads half writes; `cpu_ms` (default 1)
  of CPU.
- `cpu-heavy`: `cpu_ms` (default 50) of CPU spin; `io_ops` (default 4) I/O requests.
- `mixed`: `cpu_ms` (default 20) and `io_ops` (default 100).

A built-in job paces its I/O over its run, as the simulator's jobs do: in batches of at most
`IO_BATCH_OPS` operations (one round trip each, so the host's channel, not Python's per-call
overhead, bounds throughput), reads and writes alternating, each batch followed by its share of
the CPU. The host then sees a job ask for I/O at its VM's device rate for the length of the job,
not one burst at its start; what one job asks of the host is bounded by its VM's device, so
exceeding a host's limit takes several busy VMs at once.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from pipeline.events import QueuedJob
from producers.errors import HandlerError
from producers.guest.io import IoChannel

Handler = Callable[[QueuedJob, IoChannel], dict[str, Any] | None]

#: The most I/O operations a built-in job asks for in one round trip.
IO_BATCH_OPS = 25


def _payload_int(job: QueuedJob, name: str, default: int, maximum: int) -> int:
    value = job.payload.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"payload.{name}: expected an integer 0..{maximum}, got {value!r}")
    return value


def spin_cpu(cpu_ms: float) -> None:
    """Burn `cpu_ms` of this thread's CPU time (not wall time: a busy host stretches it)."""
    deadline = time.thread_time() + cpu_ms / 1000
    x = 0
    while time.thread_time() < deadline:
        for i in range(500):
            x ^= i * i


def _run(job: QueuedJob, io: IoChannel, cpu_ms: int, io_ops: int) -> dict[str, Any]:
    cpu_ms = _payload_int(job, "cpu_ms", cpu_ms, 600_000)
    io_ops = _payload_int(job, "io_ops", io_ops, 10_000_000)
    waited_s = 0.0
    batches = io_batches(io_ops)
    for i, ops in enumerate(batches):
        waited_s += io.request(ops, "block_rd" if i % 2 == 0 else "block_wr").waited_s
        spin_cpu(cpu_ms / len(batches))
    if not batches:
        spin_cpu(cpu_ms)
    return {"io_ops": io_ops, "cpu_ms": cpu_ms, "io_wait_s": round(waited_s, 6)}


def io_batches(io_ops: int) -> list[int]:
    """`io_ops` split into near-equal batches of at most `IO_BATCH_OPS` (none for 0)."""
    if io_ops <= 0:
        return []
    count = -(-io_ops // IO_BATCH_OPS)
    size, extra = divmod(io_ops, count)
    return [size + 1 if i < extra else size for i in range(count)]


def io_heavy(job: QueuedJob, io: IoChannel) -> dict[str, Any]:
    return _run(job, io, cpu_ms=1, io_ops=200)


def cpu_heavy(job: QueuedJob, io: IoChannel) -> dict[str, Any]:
    return _run(job, io, cpu_ms=50, io_ops=4)


def mixed(job: QueuedJob, io: IoChannel) -> dict[str, Any]:
    return _run(job, io, cpu_ms=20, io_ops=100)


BUILTIN_HANDLERS: dict[str, Handler] = {
    "io-heavy": io_heavy,
    "cpu-heavy": cpu_heavy,
    "mixed": mixed,
}


def load_handler(spec: str) -> Handler:
    """A built-in name (`io-heavy`, `cpu-heavy`, `mixed`) or `package.module:function`."""
    if spec in BUILTIN_HANDLERS:
        return BUILTIN_HANDLERS[spec]
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise HandlerError(
            f"--handler {spec!r}: expected {', '.join(BUILTIN_HANDLERS)} or MODULE:FUNCTION"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerError(f"--handler {spec!r}: cannot import {module_name}: {exc}") from None
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise HandlerError(f"--handler {spec!r}: {module_name} has no function {attribute}")
    return handler  # type: ignore[no-any-return]
