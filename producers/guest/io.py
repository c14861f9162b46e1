"""The I/O path a job handler uses: `io.request(ops, kind)` blocks until the I/O is done.

On an emulated host this is the host's shared channel (`producers.emulated.client.TcpIoChannel`),
so a guest's jobs slow down when its host is saturated. Elsewhere (a guest on a real VM) it is
`LocalDiskIoChannel`: real 4 KiB reads and writes on a scratch file, which the real hypervisor
counts as block requests.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BLOCK_BYTES = 4096


@dataclass(frozen=True)
class IoResult:
    ops: int
    waited_s: float


class IoChannel(Protocol):
    """What a handler may do I/O through. `kind`: net_rx, net_tx, block_rd, block_wr."""

    def request(self, ops: int, kind: str = "block_rd") -> IoResult: ...

    def close(self) -> None: ...


class LocalDiskIoChannel:
    """Real block I/O on a scratch file: `ops` 4 KiB writes (fsync'd once) or reads."""

    def __init__(self, scratch_dir: Path, blocks: int = 256) -> None:
        scratch_dir.mkdir(parents=True, exist_ok=True)
        self.path = scratch_dir / "io-scratch.bin"
        self.blocks = blocks
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self._fd, blocks * BLOCK_BYTES)
        self._next = 0
        self.description = f"local-disk:{self.path}"

    def request(self, ops: int, kind: str = "block_rd") -> IoResult:
        started = time.monotonic()
        block = b"\xa5" * BLOCK_BYTES
        write = kind in ("block_wr", "net_tx")
        for _ in range(ops):
            offset = (self._next % self.blocks) * BLOCK_BYTES
            self._next += 1
            if write:
                os.pwrite(self._fd, block, offset)
            else:
                os.pread(self._fd, BLOCK_BYTES, offset)
        if write and ops:
            os.fsync(self._fd)
        return IoResult(ops=ops, waited_s=time.monotonic() - started)

    def close(self) -> None:
        os.close(self._fd)


class MeteredIoChannel:
    """Counts the I/O a job did and how long it waited for it (for the guest's busy report)."""

    def __init__(self, inner: IoChannel) -> None:
        self.inner = inner
        self.ops = 0
        self.waited_s = 0.0

    def request(self, ops: int, kind: str = "block_rd") -> IoResult:
        result = self.inner.request(ops, kind)
        self.ops += result.ops
        self.waited_s += result.waited_s
        return result

    def close(self) -> None:
        self.inner.close()
