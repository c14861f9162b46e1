"""`--source` values turned into telemetry sources: `libvirt:URI` or `emulated:ADDR`."""

from __future__ import annotations

from producers.errors import SourceSpecError
from producers.telemetry.source import TelemetrySource


def open_source(spec: str, *, call_timeout_s: float = 1.0) -> TelemetrySource:
    """`libvirt:URI` (e.g. `libvirt:qemu:///system`, `libvirt:test:///default`) or `emulated:ADDR`.

    `call_timeout_s` bounds each wait for a libvirt call (a stuck domain must not stall the
    host's other VMs longer than that)."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise SourceSpecError(f"--source {spec!r}: expected libvirt:URI or emulated:ADDR")
    if kind == "libvirt":
        from producers.telemetry.libvirt_source import LibvirtSource

        return LibvirtSource(target, call_timeout_s=call_timeout_s)
    if kind == "emulated":
        from producers.telemetry.emulated_source import EmulatedSource

        return EmulatedSource(target)
    raise SourceSpecError(f"--source {spec!r}: unknown source kind {kind!r} (libvirt, emulated)")
