"""Clients of an emulated host's channel: a guest's `IoChannel`, and Dom0's stats reader.

Blocking sockets on purpose: a guest's job is meant to wait for its I/O, as a real guest's
thread waits for its virtual disk.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from producers.emulated.protocol import MAX_LINE_BYTES, Address, decode, encode, parse_address
from producers.errors import ChannelError
from producers.guest.io import IoResult


class Connection:
    """One JSON-lines connection to the channel, reconnecting once if it was dropped."""

    def __init__(self, address: Address | str, timeout_s: float = 300.0) -> None:
        self.address = parse_address(address) if isinstance(address, str) else address
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._file: Any = None

    def _connect(self) -> None:
        try:
            if self.address.path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout_s)
                sock.connect(self.address.path)
            else:
                sock = socket.create_connection(
                    (self.address.host, self.address.port), timeout=self.timeout_s
                )
        except OSError as exc:
            raise ChannelError(f"I/O channel {self.address}: cannot connect: {exc}") from None
        self._sock = sock
        self._file = sock.makefile("rb")

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            try:
                self._sock.sendall(encode(message))
                line = self._file.readline(MAX_LINE_BYTES)
            except OSError as exc:
                self.close()
                if attempt == 2:
                    raise ChannelError(f"I/O channel {self.address}: {exc}") from None
                continue
            if not line:
                self.close()
                if attempt == 2:
                    raise ChannelError(f"I/O channel {self.address}: connection closed")
                continue
            reply = decode(line)
            if not reply.get("ok"):
                raise ChannelError(f"I/O channel {self.address}: {reply.get('error')}")
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()
            self._sock = None


class TcpIoChannel:
    """A guest's I/O path through its emulated host's channel (TCP or unix socket)."""

    def __init__(self, address: Address | str, vm_id: str) -> None:
        self.vm_id = vm_id
        self._conn = Connection(address)
        self.description = f"emulated:{self._conn.address}"

    def request(self, ops: int, kind: str = "block_rd") -> IoResult:
        started = time.monotonic()
        self._conn.call({"op": "io", "vm": self.vm_id, "kind": kind, "ops": int(ops)})
        return IoResult(ops=int(ops), waited_s=time.monotonic() - started)

    def close(self) -> None:
        self._conn.close()


def read_stats(address: Address | str, timeout_s: float = 5.0) -> dict[str, Any]:
    """One `stats` answer of an emulated host."""
    conn = Connection(address, timeout_s=timeout_s)
    try:
        return conn.call({"op": "stats"})
    finally:
        conn.close()
