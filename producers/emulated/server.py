"""The backend of an emulated host: serves its guests' I/O through one `IoChannelModel`.

This plays the paper's Dom0/driver domain: one asyncio task advances the channel to the clock,
answers the guests whose requests finished, and sleeps until the next one is due or new work
changes the rates, so a request returns only when the host could have done it. It answers
`stats` with per-guest counters for the `emulated` telemetry source and the host's own
accounting (operations asked, served and lost to collapse). It owns the socket and the timing;
the accounting is the model's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producers.emulated.channel import IoChannelModel, IoKind, IoRequest
from producers.emulated.protocol import MAX_LINE_BYTES, Address, decode, encode
from producers.errors import ChannelError

log = logging.getLogger(__name__)


@dataclass
class GuestInfo:
    """A guest of the host as the backend reports it."""

    job_type: str
    running: bool = False


class ChannelServer:
    def __init__(
        self,
        host_id: str,
        model: IoChannelModel,
        guests: dict[str, GuestInfo],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host_id = host_id
        self.model = model
        self.guests = guests
        self.clock = clock
        # Changes on every backend start: the counters start over with it.
        self.incarnation = uuid.uuid4().hex[:12]
        self._work = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._server: asyncio.AbstractServer | None = None
        self._drain_task: asyncio.Task[None] | None = None
        for vm_id in guests:
            model.register_guest(vm_id)

    async def start(self, address: Address) -> Address:
        """Listen; return the bound address (port 0 picks a free port)."""
        if address.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address.path)
            self._server = await asyncio.start_unix_server(
                self._serve_client, path=address.path, limit=MAX_LINE_BYTES
            )
            bound = address
        else:
            self._server = await asyncio.start_server(
                self._serve_client, host=address.host, port=address.port, limit=MAX_LINE_BYTES
            )
            host, port = self._server.sockets[0].getsockname()[:2]
            bound = Address(host=host, port=port)
        self._drain_task = asyncio.create_task(self._drain(), name="io-channel")
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task

    # --- the channel --------------------------------------------------------------------------

    async def _drain(self) -> None:
        while True:
            self._work.clear()
            self.model.advance(self.clock())
            for request in self.model.pop_finished():
                waiter = self._waiters.pop(id(request), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            due_at = self.model.next_finish_at()
            if due_at is None:
                await self._work.wait()
                continue
            # A new request changes every guest's rate: wake for it, or when the next is due.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), max(0.0, due_at - self.clock()))

    async def io(self, vm_id: str, kind: IoKind, ops: int) -> IoRequest:
        request = self.model.submit(vm_id, kind, ops, self.clock())
        if request.done:
            return request
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[id(request)] = waiter
        self._work.set()
        await waiter
        return request

    def stats(self) -> dict[str, Any]:
        self.model.advance(self.clock())
        counters = self.model.counters()
        return {
            "ok": True,
            "host_id": self.host_id,
            "incarnation": self.incarnation,
            "capacity_ops_per_s": self.model.capacity_ops_per_s,
            "collapse": self.model.collapse,
            "served_ops": round(self.model.served_ops, 3),
            "asked_ops": round(self.model.asked_ops, 3),
            "lost_ops": round(self.model.lost_ops, 3),
            "busy_s": round(self.model.busy_s, 6),
            "saturated_s": round(self.model.saturated_s, 6),
            "pending_ops": round(self.model.pending_ops, 3),
            "vms": {
                vm_id: {
                    "job_type": info.job_type,
                    "running": info.running,
                    "device_ops_per_s": self.model.device_ops_per_s(vm_id),
                    "counters": counters[vm_id].model_dump(),
                }
                for vm_id, info in self.guests.items()
            },
        }

    # --- the socket ---------------------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = await self._handle(decode(line))
                except ChannelError as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(encode(reply))
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.debug("channel client dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "stats":
            return self.stats()
        if op != "io":
            raise ChannelError(f"op: unknown operation {op!r} (io, stats)")
        vm_id = message.get("vm")
        if vm_id not in self.guests:
            raise ChannelError(f"vm: {vm_id!r} is not a guest of host {self.host_id}")
        try:
            kind = IoKind(message.get("kind", IoKind.BLOCK_RD))
        except ValueError:
            raise ChannelError(
                f"kind: {message.get('kind')!r} is not one of {[k.value for k in IoKind]}"
            ) from None
        ops = message.get("ops")
        if not isinstance(ops, int) or isinstance(ops, bool) or not 0 <= ops <= 10_000_000:
            raise ChannelError(f"ops: expected an integer 0..10000000, got {ops!r}")
        request = await self.io(vm_id, kind, ops)
        finished_at = request.finished_at if request.finished_at is not None else self.clock()
        # What the request takes alone, at its own device's rate.
        rate = self.model.device_ops_per_s(vm_id) or self.model.capacity_ops_per_s
        service_s = ops / rate
        return {
            "ok": True,
            "ops": ops,
            "service_s": service_s,
            "queued_s": max(0.0, finished_at - request.submitted_at - service_s),
        }
