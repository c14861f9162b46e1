"""`--source` values turned into telemetry sources: `libvirt:URI` or `emulated:ADDR`."""

from __future__ import annotations

from producers.errors import SourceSpecError
from producers.telemetry.source import TelemetrySource


def open_source(spec: str) -> TelemetrySource:
    """`libvirt:URI` (e.g. `libvirt:qemu:///system`, `libvirt:test:///default`) or `emulated:ADDR`."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise SourceSpecError(f"--source {spec!r}: expected libvirt:URI or emulated:ADDR")
    if kind == "libvirt":
        from producers.telemetry.libvirt_source import LibvirtSource

        return LibvirtSource(target)
    if kind == "emulated":
        from producers.telemetry.emulated_source import EmulatedSource

        return EmulatedSource(target)
    raise SourceSpecError(f"--source {spec!r}: unknown source kind {kind!r} (libvirt, emulated)")
