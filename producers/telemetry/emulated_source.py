"""Per-guest counters of an emulated host, read from its backend's `stats` answer."""

from __future__ import annotations

from pipeline.events import IoCounters
from producers.emulated.client import read_stats
from producers.emulated.protocol import parse_address
from producers.errors import ChannelError, SourceError
from producers.telemetry.source import VmReading


class EmulatedSource:
    def __init__(self, address: str) -> None:
        try:
            self.address = parse_address(address)
        except ChannelError as exc:
            raise SourceError(f"emulated:{address}: {exc}") from None
        self.description = f"emulated:{self.address}"
        self.path: str | None = "emulated"

    def read(self) -> list[VmReading]:
        try:
            stats = read_stats(self.address)
        except ChannelError as exc:
            raise SourceError(f"{self.description}: {exc}") from None
        incarnation = str(stats.get("incarnation"))
        return [
            VmReading(
                vm_id=vm_id,
                counters=IoCounters.model_validate(vm["counters"]),
                job_type=vm.get("job_type"),
                incarnation=incarnation,
            )
            for vm_id, vm in sorted(stats.get("vms", {}).items())
            if vm.get("running")
        ]

    def close(self) -> None:
        pass
