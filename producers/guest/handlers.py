"""Job handlers: what a guest does with a job. Built-ins, and loading `MODULE:FUNCTION`.

A handler is

    def handler(job: QueuedJob, io: IoChannel) -> dict | None

It does its I/O through `io.request(ops, kind)` (so an emulated host's channel meters it and a
saturated host slows it down) and returns a small result dict (logged) or None. A raised
exception makes the job's outcome `failed`, with the exception as its error text.

Built-ins, scaled by the job's payload:
- `io-heavy`: `io_ops` (default 200) I/O requests, half reads half writes, in two batched round
  trips; `cpu_ms` (default 1) of CPU.
- `cpu-heavy`: `cpu_ms` (default 50) of CPU spin; `io_ops` (default 4) I/O requests.
- `mixed`: `cpu_ms` (default 20) and `io_ops` (default 100).
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


def _payload_int(job: QueuedJob, name: str, default: int, maximum: int) -> int:
    value = job.payload.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"payload.{name}: expected an integer 0..{maximum}, got {value!r}")
    return value


def spin_cpu(cpu_ms: int) -> None:
    """Burn `cpu_ms` of this thread's CPU time (not wall time: a busy host stretches it)."""
    deadline = time.thread_time() + cpu_ms / 1000
    x = 0
    while time.thread_time() < deadline:
        for i in range(500):
            x ^= i * i


def _run(job: QueuedJob, io: IoChannel, cpu_ms: int, io_ops: int) -> dict[str, Any]:
    cpu_ms = _payload_int(job, "cpu_ms", cpu_ms, 600_000)
    io_ops = _payload_int(job, "io_ops", io_ops, 10_000_000)
    reads = io_ops // 2
    waited_s = 0.0
    # Batched: each request is one round trip for many operations, so the host's capacity, not
    # Python's per-call overhead, bounds throughput.
    if reads:
        waited_s += io.request(reads, "block_rd").waited_s
    if io_ops - reads:
        waited_s += io.request(io_ops - reads, "block_wr").waited_s
    spin_cpu(cpu_ms)
    return {"io_ops": io_ops, "cpu_ms": cpu_ms, "io_wait_s": round(waited_s, 6)}


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
