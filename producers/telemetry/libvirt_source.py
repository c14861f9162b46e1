"""Per-VM I/O counters from libvirt, for any URI (`qemu:///system`, `xen:///system`, `test:///...`).

Three ways to read a host; `path` says which one the last read used (Dom0 logs it and
publishes it in the host's registration):

- `bulk`: one `virConnectGetAllDomainStats` call for the whole host (groups state, interface,
  block), with `VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT`: a domain whose job another client
  holds answers at once, without its job-bound counters, instead of making the whole host wait
  30 s for it. Such an incomplete record is a VM present with unknown counters this time
  (`libvirt_stats`), never zeros.
- `bulk-per-domain`: while a bulk call overran (it took a stuck domain's job and waits on its
  monitor, which has no timeout), the same stats domain by domain (`virDomainListGetStats`),
  each call bounded. The stuck domain answers at once, without counters: our overrunning call
  holds its job.
- `per-device`: drivers whose stats records leave the device groups empty (the test driver):
  `interfaceStats`/`blockStats` for each `<interface>`/`<disk>` of the domain's live XML.

Every call runs bounded (`bounded`): a domain whose call overruns is reported present with
unknown counters, its last known job type and status, and the other domains are read all the
same. A domain that stopped between listing and reading it is simply not there.

The job type a domain serves may be declared in its metadata:

    <metadata>
      <vmlb:job-type xmlns:vmlb="https://vmlb.dev/ns">io-heavy</vmlb:job-type>
    </metadata>
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pipeline.events import IoCounters, VmStatus
from producers.errors import SourceError
from producers.telemetry.bounded import BoundedCalls
from producers.telemetry.libvirt_stats import (
    VMLB_NS,
    counters_from_record,
    devices_from_xml,
    fills_device_groups,
    job_type_from_metadata,
    status_from_record,
    status_from_state,
)
from producers.telemetry.source import VmReading

log = logging.getLogger(__name__)

BULK = "bulk"
BULK_PER_DOMAIN = "bulk-per-domain"
PER_DEVICE = "per-device"


@dataclass(frozen=True)
class _Known:
    """What a domain last answered: given again while its calls overrun."""

    job_type: str | None
    status: VmStatus | None


class LibvirtSource:
    """Reads the domains of one libvirt connection. Reconnects after a lost connection."""

    def __init__(
        self,
        uri: str,
        conn: Any = None,
        *,
        call_timeout_s: float = 1.0,
        per_device: bool = False,
    ) -> None:
        """Open `uri` read-only, or use `conn`, an open connection to it (the test driver keeps
        a `test:///path/node.xml` world per connection, so a test that defines and destroys
        domains must share its connection). `call_timeout_s` bounds each wait for libvirt.
        `per_device` reads per device even where bulk stats work (a way around a driver whose
        bulk stats misbehave; the tests use it to read a real QEMU domain that way)."""
        import libvirt

        # libvirt prints every error to stderr by default; the errors we expect are handled.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self._libvirt = libvirt
        self.uri = uri
        self.description = f"libvirt:{uri}"
        self.path: str | None = None
        self.call_timeout_s = call_timeout_s
        self._owns_conn = conn is None
        self._conn: Any = conn
        self._calls = BoundedCalls("libvirt")
        # Bumped on every connection: a call stuck on an old connection keeps no key busy.
        self._generation = 0
        # Whether the driver fills the device groups of its stats records (None: not known yet).
        self._force_per_device = per_device
        self._bulk_supported: bool | None = False if per_device else None
        self._known: dict[str, _Known] = {}
        # The domains last listed (or named by bulk records): read one by one while listing
        # overruns (libvirt lists a domain under its lock, which starting it holds for seconds).
        self._domains: dict[str, Any] = {}
        self._groups = (
            libvirt.VIR_DOMAIN_STATS_STATE
            | libvirt.VIR_DOMAIN_STATS_INTERFACE
            | libvirt.VIR_DOMAIN_STATS_BLOCK
        )
        if conn is None:
            self._connect()

    def _connect(self) -> None:
        libvirt = self._libvirt
        try:
            self._conn = libvirt.openReadOnly(self.uri)
        except libvirt.libvirtError as exc:
            raise SourceError(f"{self.description}: cannot connect: {exc}") from None
        self._generation += 1
        self._bulk_supported = False if self._force_per_device else None
        self._domains = {}  # objects of the old connection would only fail

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
            readings = self._read()
        except libvirt.libvirtError as exc:
            if self._owns_conn:
                self.close()  # reconnect next time
            raise SourceError(f"{self.description}: {exc}") from None
        if self._owns_conn and not self._alive():
            # The calls that failed did so because the connection went away, not the domains.
            self.close()
            raise SourceError(f"{self.description}: connection lost")
        # Unanswered readings carry the known values already: storing them back keeps them.
        self._known = {r.vm_id: _Known(r.job_type, r.status) for r in readings}
        return readings

    def _alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except self._libvirt.libvirtError:
            return False

    def _read(self) -> list[VmReading]:
        if self._bulk_supported is not False:
            records = self._bulk_records()
            if records is not None:
                if any(fills_device_groups(record) for _, record in records):
                    self._bulk_supported = True
                elif records:
                    self._bulk_supported = False  # the driver leaves the device groups empty
                if self._bulk_supported is not False:
                    if records:
                        self.path = BULK
                    return self._from_records(records)
        if self._bulk_supported is False:
            self.path = PER_DEVICE
            return self._per_domain(self._read_per_device)
        self.path = BULK_PER_DOMAIN
        return self._per_domain(self._read_record)

    def _bulk_records(self) -> list[tuple[Any, dict[str, Any]]] | None:
        """The host's stats records; None while a bulk call overruns (or is unsupported)."""
        libvirt = self._libvirt
        conn = self._conn
        flags = (
            libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
            | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        )
        key = (self._generation, "*bulk*")
        if key in self._calls.busy():
            return None  # the last one still waits on a stuck domain
        future = self._calls.run(
            key, lambda: conn.getAllDomainStats(self._groups, flags), self.call_timeout_s
        )
        if future is None:
            log.warning(
                "%s: bulk stats call overran %.3gs (a stuck domain?); reading domain by domain "
                "until it returns",
                self.description,
                self.call_timeout_s,
            )
            return None
        try:
            return list(future.result())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            self._bulk_supported = False
            return None

    def _from_records(self, records: list[tuple[Any, dict[str, Any]]]) -> list[VmReading]:
        """Readings from bulk records; job types from each domain's metadata, read bounded."""
        by_name = {dom.name(): (dom, record) for dom, record in records}
        self._domains = {name: dom for name, (dom, _) in by_name.items()}
        job_types, late = self._bounded({name: self._job_type for name in by_name}, by_name)
        readings = []
        for name, (dom, record) in sorted(by_name.items()):
            if name in late:
                job_type = self._known_of(name).job_type
            elif name in job_types:
                job_type = job_types[name]
            else:
                continue  # vanished since the stats call
            readings.append(
                self._reading(
                    dom, counters_from_record(record), status_from_record(record), job_type
                )
            )
        return readings

    def _per_domain(self, read_one: Callable[[Any], VmReading | None]) -> list[VmReading]:
        """Every active domain read by `read_one`, bounded; late ones with unknown counters.

        If listing the domains overruns, the domains listed before are read: a domain that
        starts or stops holds its lock while libvirt lists, and that must not stall the
        others. (A new domain is seen once listing answers again.)"""
        libvirt = self._libvirt
        conn = self._conn
        listing = self._calls.run(
            (self._generation, "*list*"),
            lambda: conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE),
            self.call_timeout_s,
        )
        if listing is not None:
            self._domains = {dom.name(): dom for dom in listing.result()}
        elif not self._domains:
            raise SourceError(f"{self.description}: listing the domains overran")
        by_name = {name: (dom, None) for name, dom in self._domains.items()}
        done, late = self._bounded({name: read_one for name in by_name}, by_name)
        readings = [reading for reading in done.values() if reading is not None]
        for name in late:
            readings.append(self._unanswered(by_name[name][0]))
        return sorted(readings, key=lambda r: r.vm_id)

    def _bounded(
        self, calls: dict[str, Callable[[Any], Any]], doms: dict[str, tuple[Any, Any]]
    ) -> tuple[dict[str, Any], set[str]]:
        """Run one call per domain, together bounded by `call_timeout_s`: (results by domain,
        domains whose call overran, now or before, or failed). Vanished domains are in neither."""
        futures: dict[str, Future[Any]] = {}
        late: set[str] = set()
        for name, call in calls.items():
            dom = doms[name][0]
            future = self._calls.start((self._generation, name), lambda c=call, d=dom: c(d))
            if future is None:
                late.add(name)  # its call from before still waits
            else:
                futures[name] = future
        late |= {str(name) for name in self._calls.wait(dict(futures), self.call_timeout_s)}
        results: dict[str, Any] = {}
        for name, future in futures.items():
            if name in late:
                continue
            try:
                results[name] = future.result()
            except self._libvirt.libvirtError as exc:
                if self._vanished(exc):
                    continue
                log.debug("%s: %s: %s", self.description, name, exc)
                late.add(name)  # its counters are unknown this time
            except Exception as exc:  # one domain's odd answer must not stop the host's read
                log.warning("%s: %s: unreadable answer: %r", self.description, name, exc)
                late.add(name)
        return results, late

    def _read_record(self, dom: Any) -> VmReading | None:
        """One domain's stats record (the bulk call's, asked for this domain alone); None if
        it is not running (a domain listed before may have stopped since)."""
        libvirt = self._libvirt
        records = dom.connect().domainListGetStats(
            [dom], self._groups, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        )
        record = records[0][1] if records else {}
        if record.get("state.state") == libvirt.VIR_DOMAIN_SHUTOFF:
            return None
        counters = (
            counters_from_record(record)
            if fills_device_groups(record) or self._bulk_supported
            else self._per_device_counters(dom)
        )
        return self._reading(dom, counters, status_from_record(record), self._job_type(dom))

    def _read_per_device(self, dom: Any) -> VmReading | None:
        state, _reason = dom.state()
        if state == self._libvirt.VIR_DOMAIN_SHUTOFF:
            return None
        counters = self._per_device_counters(dom)
        return self._reading(dom, counters, status_from_state(state), self._job_type(dom))

    def _per_device_counters(self, dom: Any) -> IoCounters | None:
        """Sum of each NIC's packets and each disk's requests; None if a device that has
        counters could not be read (a guessed 0 would look like a counter restart)."""
        libvirt = self._libvirt
        try:
            nics, disks = devices_from_xml(dom.XMLDesc(0))
        except ET.ParseError:
            return None
        # The same answer every time for these, so skipping them never moves the sum.
        no_counters = {libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT}
        rx = tx = rd = wr = 0
        for nic in nics:
            try:
                # (rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets, tx_errs, tx_drop)
                s = dom.interfaceStats(nic.path)
            except libvirt.libvirtError as exc:
                code = exc.get_error_code()
                if self._vanished(exc):
                    raise
                if code in no_counters or (
                    not nic.named and code == libvirt.VIR_ERR_INTERNAL_ERROR
                ):
                    # No host-side device: QEMU answers a MAC of user networking with
                    # "Interface name not provided" (an internal error).
                    continue
                log.debug("%s: %s: NIC %s: %s", self.description, dom.name(), nic.path, exc)
                return None
            rx += max(s[1], 0)
            tx += max(s[5], 0)
        for disk in disks:
            try:
                # (rd_req, rd_bytes, wr_req, wr_bytes, errs); -1 where the driver does not know.
                s = dom.blockStats(disk)
            except libvirt.libvirtError as exc:
                if self._vanished(exc):
                    raise
                if exc.get_error_code() in no_counters:
                    continue  # e.g. an empty CD-ROM drive
                log.debug("%s: %s: disk %s: %s", self.description, dom.name(), disk, exc)
                return None
            rd += max(s[0], 0)
            wr += max(s[2], 0)
        return IoCounters(net_rx_packets=rx, net_tx_packets=tx, block_rd_reqs=rd, block_wr_reqs=wr)

    def _job_type(self, dom: Any) -> str | None:
        libvirt = self._libvirt
        try:
            element = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VMLB_NS, 0)
        except libvirt.libvirtError as exc:
            if self._vanished(exc):
                raise
            return None  # no vmlb metadata (VIR_ERR_NO_DOMAIN_METADATA) or unsupported
        return job_type_from_metadata(element)

    def _reading(
        self, dom: Any, counters: IoCounters | None, status: VmStatus | None, job_type: str | None
    ) -> VmReading:
        name = dom.name()
        known = self._known_of(name)
        return VmReading(
            vm_id=name,
            counters=counters,
            job_type=job_type if job_type is not None or counters is not None else known.job_type,
            incarnation=f"{dom.UUIDString()}/{dom.ID()}",
            status=status if status is not None else known.status,
        )

    def _unanswered(self, dom: Any) -> VmReading:
        """A domain that is there but did not answer in time: counters unknown."""
        return self._reading(dom, None, None, None)

    def _known_of(self, name: str) -> _Known:
        return self._known.get(name, _Known(None, None))

    def _vanished(self, exc: Any) -> bool:
        """The domain stopped (or was undefined) between being listed and being read."""
        libvirt = self._libvirt
        return exc.get_error_code() in (
            libvirt.VIR_ERR_NO_DOMAIN,
            libvirt.VIR_ERR_OPERATION_INVALID,
        )
