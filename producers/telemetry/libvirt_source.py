"""Per-VM I/O counters from libvirt, for any URI (`qemu:///system`, `xen:///system`, `test:///...`).

Bulk stats (`getAllDomainStats` with the interface and block groups) are one call for the whole
host where the driver implements them (QEMU, libxl). Drivers that answer those groups with
nothing (the test driver does) are read per device instead: `interfaceStats`/`blockStats` for
each `<interface>`/`<disk>` of the domain's live XML. The choice is made per domain and per
reading, so a domain without disks or NICs simply counts zero.

The job type a domain serves may be declared in its metadata:

    <metadata>
      <vmlb:job-type xmlns:vmlb="https://vmlb.dev/ns">io-heavy</vmlb:job-type>
    </metadata>
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from typing import Any

from pipeline.events import IoCounters
from producers.errors import SourceError
from producers.telemetry.source import VmReading

log = logging.getLogger(__name__)

#: The XML namespace of vmlb's domain metadata.
VMLB_NS = "https://vmlb.dev/ns"


class LibvirtSource:
    """Reads the running domains of one libvirt connection. Reconnects after a lost connection."""

    def __init__(self, uri: str, conn: Any = None) -> None:
        """Open `uri` read-only, or use `conn`, an open connection to it (the test driver keeps
        a `test:///path/node.xml` world per connection, so a test that defines and destroys
        domains must share its connection)."""
        import libvirt

        # libvirt prints every error to stderr by default; the errors we expect are handled.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self._libvirt = libvirt
        self.uri = uri
        self.description = f"libvirt:{uri}"
        self._owns_conn = conn is None
        self._conn: Any = conn
        # Whether the driver fills the bulk stats groups (None: not known yet).
        self._bulk_supported: bool | None = None
        if conn is None:
            self._connect()

    def _connect(self) -> None:
        libvirt = self._libvirt
        try:
            self._conn = libvirt.openReadOnly(self.uri)
        except libvirt.libvirtError as exc:
            raise SourceError(f"{self.description}: cannot connect: {exc}") from None
        self._bulk_supported = None

    def close(self) -> None:
        if self._conn is not None and self._owns_conn:
            with contextlib.suppress(self._libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def read(self) -> list[VmReading]:
        libvirt = self._libvirt
        if self._owns_conn and (self._conn is None or not self._alive()):
            self.close()
            self._connect()
        try:
            return self._read()
        except libvirt.libvirtError as exc:
            if self._owns_conn:
                self.close()  # reconnect next time
            raise SourceError(f"{self.description}: {exc}") from None

    def _alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except self._libvirt.libvirtError:
            return False

    def _read(self) -> list[VmReading]:
        libvirt = self._libvirt
        groups = libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK
        flags = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        bulk: list[tuple[Any, dict[str, Any]]] = []
        if self._bulk_supported is not False:
            try:
                bulk = self._conn.getAllDomainStats(groups, flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                    raise
                self._bulk_supported = False
        if self._bulk_supported is False:
            bulk = [
                (dom, {})
                for dom in self._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            ]
        readings = []
        for dom, stats in bulk:
            try:
                readings.append(self._reading(dom, stats))
            except libvirt.libvirtError as exc:
                # The domain stopped between listing and reading it: it is simply not running.
                if exc.get_error_code() in (
                    libvirt.VIR_ERR_NO_DOMAIN,
                    libvirt.VIR_ERR_OPERATION_INVALID,
                ):
                    log.debug(
                        "%s: domain %s vanished while being read", self.description, dom.name()
                    )
                    continue
                raise
        return readings

    def _reading(self, dom: Any, stats: dict[str, Any]) -> VmReading:
        if "net.count" in stats or "block.count" in stats:
            self._bulk_supported = True
            counters = counters_from_bulk_stats(stats)
        else:
            counters = self._counters_per_device(dom)
        return VmReading(
            vm_id=dom.name(),
            counters=counters,
            job_type=self._job_type(dom),
            incarnation=f"{dom.UUIDString()}/{dom.ID()}",
        )

    def _counters_per_device(self, dom: Any) -> IoCounters:
        libvirt = self._libvirt
        nics, disks = devices_from_xml(dom.XMLDesc(0))
        rx = tx = rd = wr = 0
        for nic in nics:
            try:
                # (rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets, tx_errs, tx_drop)
                s = dom.interfaceStats(nic)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (
                    libvirt.VIR_ERR_INVALID_ARG,
                    libvirt.VIR_ERR_NO_SUPPORT,
                ):
                    continue  # a NIC with no host-side device (e.g. user networking)
                raise
            rx += max(s[1], 0)
            tx += max(s[5], 0)
        for disk in disks:
            try:
                # (rd_req, rd_bytes, wr_req, wr_bytes, errs); -1 where the driver does not know.
                s = dom.blockStats(disk)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (
                    libvirt.VIR_ERR_INVALID_ARG,
                    libvirt.VIR_ERR_NO_SUPPORT,
                ):
                    continue  # e.g. an empty CD-ROM drive
                raise
            rd += max(s[0], 0)
            wr += max(s[2], 0)
        return IoCounters(net_rx_packets=rx, net_tx_packets=tx, block_rd_reqs=rd, block_wr_reqs=wr)

    def _job_type(self, dom: Any) -> str | None:
        libvirt = self._libvirt
        try:
            element = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VMLB_NS, 0)
        except libvirt.libvirtError:
            return None  # no vmlb metadata (VIR_ERR_NO_DOMAIN_METADATA) or unsupported
        return job_type_from_metadata(element)


def counters_from_bulk_stats(stats: dict[str, Any]) -> IoCounters:
    """Sum a `getAllDomainStats` record's per-NIC packets and per-disk requests."""
    rx = tx = rd = wr = 0
    for i in range(int(stats.get("net.count", 0))):
        rx += int(stats.get(f"net.{i}.rx.pkts", 0))
        tx += int(stats.get(f"net.{i}.tx.pkts", 0))
    for i in range(int(stats.get("block.count", 0))):
        rd += int(stats.get(f"block.{i}.rd.reqs", 0))
        wr += int(stats.get(f"block.{i}.wr.reqs", 0))
    return IoCounters(net_rx_packets=rx, net_tx_packets=tx, block_rd_reqs=rd, block_wr_reqs=wr)


def devices_from_xml(xml: str) -> tuple[list[str], list[str]]:
    """The NICs (target dev, else MAC) and disks (target dev) of a domain's XML."""
    root = ET.fromstring(xml)
    nics = []
    for iface in root.iterfind("./devices/interface"):
        target = iface.find("target")
        mac = iface.find("mac")
        if target is not None and target.get("dev"):
            nics.append(target.get("dev", ""))
        elif mac is not None and mac.get("address"):
            nics.append(mac.get("address", ""))
    disks = [
        target.get("dev", "")
        for target in root.iterfind("./devices/disk/target")
        if target.get("dev")
    ]
    return nics, disks


def job_type_from_metadata(element_xml: str) -> str | None:
    """The text of `<vmlb:job-type>` as libvirt returns it (namespace stripped), or None."""
    try:
        root = ET.fromstring(element_xml)
    except ET.ParseError:
        return None
    text = (root.text or "").strip()
    return text if root.tag.rsplit("}", 1)[-1] == "job-type" and text else None
