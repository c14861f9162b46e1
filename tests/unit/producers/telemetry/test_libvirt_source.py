"""The libvirt source's three read paths, bounded waits and error handling, against a fake
connection that answers like QEMU/libvirt 9.0 did (records, errors) in tests/integration."""

from __future__ import annotations

import threading
from typing import Any

import libvirt
import pytest

from pipeline.events import VmStatus
from producers.errors import SourceError
from producers.telemetry.libvirt_source import LibvirtSource
from producers.telemetry.source import VmReading


def error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, 0, message, 2, None, None, None, -1, -1)
    return exc


def record(rd: int, wr: int = 0, state: int = 1) -> dict[str, Any]:
    return {
        "state.state": state, "state.reason": 1, "net.count": 1,
        "block.count": 1, "block.0.name": "vda", "block.0.rd.reqs": rd, "block.0.wr.reqs": wr,
    }  # fmt: skip


USER_NIC_XML = """<domain><devices>
  <disk type='file' device='disk'><target dev='vda'/></disk>
  <interface type='user'><mac address='52:54:00:00:00:02'/></interface>
</devices></domain>"""


class FakeDomain:
    def __init__(self, conn: FakeConn, name: str, job_type: str | None, dom_id: int) -> None:
        self.conn, self._name, self.job_type, self.dom_id = conn, name, job_type, dom_id
        self.record = record(100)
        self.state_code = 1
        self.xml = USER_NIC_XML
        self.block = (100, 0, 7, 0, 0)
        self.hang: threading.Event | None = None  # its own calls wait on this
        self.stats_calls = 0

    def name(self) -> str:
        return self._name

    def UUIDString(self) -> str:
        return f"uuid-{self._name}"

    def ID(self) -> int:
        return self.dom_id

    def connect(self) -> FakeConn:
        return self.conn

    def _wait(self) -> None:
        if self.hang is not None:
            self.hang.wait()

    def metadata(self, _kind: int, _uri: str, _flags: int) -> str:
        self._wait()
        if self.job_type is None:
            raise error(libvirt.VIR_ERR_NO_DOMAIN_METADATA, "metadata not found")
        return f"<job-type>{self.job_type}</job-type>"

    def state(self) -> list[int]:
        return [self.state_code, 1]

    def XMLDesc(self, _flags: int) -> str:
        return self.xml

    def interfaceStats(self, path: str) -> tuple[int, ...]:
        if path == "52:54:00:00:00:02":
            raise error(
                libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: Interface name not provided"
            )
        if path == "vnet-gone":
            raise error(libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: tap device gone")
        return (0, 5, 0, 0, 0, 6, 0, 0)

    def blockStats(self, _path: str) -> tuple[int, ...]:
        self._wait()
        return self.block


class FakeConn:
    """Domains by name; bulk calls answer each domain's `record` (empty groups if not
    `fills_groups`, like the test driver)."""

    def __init__(self) -> None:
        self.domains: dict[str, FakeDomain] = {}
        self.fills_groups = True
        self.bulk_hang: threading.Event | None = None
        self.bulk_error: libvirt.libvirtError | None = None
        self.list_hang: threading.Event | None = None
        self.bulk_calls = 0
        self.alive = True

    def add(self, name: str, job_type: str | None = None, dom_id: int = 1) -> FakeDomain:
        self.domains[name] = FakeDomain(self, name, job_type, dom_id)
        return self.domains[name]

    def _record(self, dom: FakeDomain) -> dict[str, Any]:
        if not self.fills_groups:
            return {"state.state": dom.state_code, "state.reason": 0}
        return dict(dom.record)

    def getAllDomainStats(self, _groups: int, flags: int) -> list[tuple[FakeDomain, dict]]:
        assert flags & libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        self.bulk_calls += 1
        if self.bulk_error is not None:
            raise self.bulk_error
        if self.bulk_hang is not None:
            self.bulk_hang.wait()
        return [(dom, self._record(dom)) for dom in self.domains.values()]

    def domainListGetStats(self, doms: list[FakeDomain], _groups: int, flags: int) -> list:
        assert flags & libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        out = []
        for dom in doms:
            dom.stats_calls += 1
            dom._wait()
            out.append((dom, self._record(dom)))
        return out

    def listAllDomains(self, _flags: int) -> list[FakeDomain]:
        if self.list_hang is not None:
            self.list_hang.wait()
        return list(self.domains.values())

    def isAlive(self) -> bool:
        return self.alive


def by_vm(readings: list[VmReading]) -> dict[str, VmReading]:
    return {r.vm_id: r for r in readings}


def join_calls() -> None:
    """Wait until every libvirt call thread has returned (after a test released them)."""
    for thread in threading.enumerate():
        if thread.name.startswith("libvirt-"):
            thread.join(timeout=10.0)


@pytest.fixture
def released() -> Any:
    """Events that tests hang calls on; all set at the end so no thread outlives the test."""
    events: list[threading.Event] = []

    def make() -> threading.Event:
        events.append(threading.Event())
        return events[-1]

    yield make
    for event in events:
        event.set()
    join_calls()


def test_bulk_path_reads_every_domain_in_one_call() -> None:
    conn = FakeConn()
    conn.add("a", "io-heavy", dom_id=3).record = record(40, 2)
    conn.add("b").record = record(7, state=3)  # paused
    source = LibvirtSource("qemu:///system", conn=conn, call_timeout_s=5.0)
    readings = by_vm(source.read())
    assert source.path == "bulk" and conn.bulk_calls == 1
    a, b = readings["a"], readings["b"]
    assert a.counters is not None and (a.counters.block_rd_reqs, a.counters.block_wr_reqs) == (
        40,
        2,
    )
    assert (a.job_type, a.incarnation, a.status) == ("io-heavy", "uuid-a/3", VmStatus.RUNNING)
    assert (b.job_type, b.status) == (None, VmStatus.PAUSED)


def test_a_record_without_counters_is_a_present_vm_with_unknown_counters() -> None:
    conn = FakeConn()
    dom = conn.add("a", "io-heavy")
    source = LibvirtSource("qemu:///system", conn=conn, call_timeout_s=5.0)
    assert by_vm(source.read())["a"].counters is not None
    dom.record = {"state.state": 1, "state.reason": 1, "net.count": 1}  # job held elsewhere
    reading = by_vm(source.read())["a"]
    assert reading.counters is None
    assert (reading.job_type, reading.status) == ("io-heavy", VmStatus.RUNNING)
    assert source.path == "bulk"


def test_a_stuck_bulk_call_does_not_freeze_the_other_domains(released: Any) -> None:
    conn = FakeConn()
    conn.add("ok", "io-heavy").record = record(10)
    stuck = conn.add("stuck", "cpu-heavy")
    source = LibvirtSource("qemu:///system", conn=conn, call_timeout_s=0.05)
    source.read()
    conn.bulk_hang = released()
    # The bulk call took the stuck domain's job and waits on its monitor: the domain answers
    # the per-domain NOWAIT call at once, without counters.
    stuck.record = {"state.state": 1, "state.reason": 1, "net.count": 1}
    conn.domains["ok"].record = record(25)
    readings = by_vm(source.read())
    assert source.path == "bulk-per-domain"
    assert readings["ok"].counters is not None and readings["ok"].counters.block_rd_reqs == 25
    assert readings["stuck"].counters is None and readings["stuck"].job_type == "cpu-heavy"
    # While the stuck call waits, no second bulk call is made.
    calls = conn.bulk_calls
    source.read()
    assert conn.bulk_calls == calls
    conn.bulk_hang.set()
    join_calls()
    conn.bulk_hang = None
    source.read()
    assert source.path == "bulk" and conn.bulk_calls == calls + 1


def test_a_domain_whose_calls_hang_costs_only_its_own_counters(released: Any) -> None:
    conn = FakeConn()
    conn.add("ok", "io-heavy")
    stuck = conn.add("stuck", "cpu-heavy")
    source = LibvirtSource("qemu:///system", conn=conn, call_timeout_s=0.05)
    source.read()
    conn.bulk_hang = released()
    stuck.hang = released()  # its per-domain call hangs too (we were first to reach it)
    for _ in range(3):
        readings = by_vm(source.read())
        assert readings["ok"].counters is not None
        assert readings["stuck"].counters is None
        assert (readings["stuck"].job_type, readings["stuck"].status) == (
            "cpu-heavy",
            VmStatus.RUNNING,
        )
    assert stuck.stats_calls == 1  # asked once, not once per tick while it hangs


def test_a_domain_first_seen_while_stuck_has_no_known_type(released: Any) -> None:
    conn = FakeConn()
    conn.bulk_hang = released()
    stuck = conn.add("stuck", "cpu-heavy")
    stuck.hang = released()
    source = LibvirtSource("qemu:///system", conn=conn, call_timeout_s=0.05)
    reading = by_vm(source.read())["stuck"]
    assert (reading.counters, reading.job_type, reading.status) == (None, None, None)


def test_drivers_without_bulk_device_stats_are_read_per_device() -> None:
    conn = FakeConn()
    conn.fills_groups = False  # the test driver: records with the state group only
    dom = conn.add("a", "io-heavy")
    dom.state_code = 3
    source = LibvirtSource("test:///default", conn=conn, call_timeout_s=5.0)
    reading = by_vm(source.read())["a"]
    assert source.path == "per-device"
    # The user NIC (QEMU: "Interface name not provided") has no host-side counters: skipped.
    assert reading.counters is not None
    assert (reading.counters.block_rd_reqs, reading.counters.block_wr_reqs) == (100, 7)
    assert reading.counters.net_rx_packets == 0
    assert reading.status is VmStatus.PAUSED
    calls = conn.bulk_calls
    source.read()
    assert conn.bulk_calls == calls  # decided once per connection


def test_per_device_nic_with_a_host_device_that_fails_makes_counters_unknown() -> None:
    conn = FakeConn()
    conn.fills_groups = False
    dom = conn.add("a", "io-heavy")
    dom.xml = USER_NIC_XML.replace(
        "</devices>",
        "<interface type='network'><mac address='52:54:00:00:00:09'/><target dev='vnet-gone'/>"
        "</interface></devices>",
    )
    source = LibvirtSource("test:///default", conn=conn, call_timeout_s=5.0)
    assert by_vm(source.read())["a"].counters is None


def test_unsupported_bulk_stats_fall_back_to_per_device() -> None:
    conn = FakeConn()
    conn.add("a", "io-heavy")
    conn.bulk_error = error(libvirt.VIR_ERR_NO_SUPPORT, "this function is not supported")
    source = LibvirtSource("xen:///system", conn=conn, call_timeout_s=5.0)
    assert by_vm(source.read())["a"].counters is not None
    assert source.path == "per-device"


def test_a_domain_that_vanishes_while_read_is_not_there() -> None:
    conn = FakeConn()
    conn.fills_groups = False
    conn.add("ok", "io-heavy")
    gone = conn.add("gone", "io-heavy")

    def vanished(_path: str) -> tuple[int, ...]:
        raise error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found")

    gone.blockStats = vanished  # type: ignore[method-assign]
    source = LibvirtSource("test:///default", conn=conn, call_timeout_s=5.0)
    assert set(by_vm(source.read())) == {"ok"}


def test_other_bulk_errors_are_source_errors() -> None:
    conn = FakeConn()
    conn.add("a")
    conn.bulk_error = error(libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset")
    source = LibvirtSource("qemu:///system", conn=conn, call_timeout_s=5.0)
    with pytest.raises(SourceError, match="Connection reset"):
        source.read()


def test_a_listing_that_overruns_reads_the_domains_known_from_before(released: Any) -> None:
    conn = FakeConn()
    conn.fills_groups = False
    conn.add("a", "io-heavy")
    stopping = conn.add("b", "io-heavy")
    source = LibvirtSource("test:///default", conn=conn, call_timeout_s=5.0)
    assert set(by_vm(source.read())) == {"a", "b"}
    # A domain starting holds its lock while libvirt lists: the listing overruns.
    conn.list_hang = released()
    stopping.state_code = 5  # shut off since: not there any more
    source.call_timeout_s = 0.05
    readings = by_vm(source.read())
    assert set(readings) == {"a"} and readings["a"].counters is not None


def test_a_first_listing_that_overruns_is_a_source_error(released: Any) -> None:
    conn = FakeConn()
    conn.fills_groups = False
    conn.add("a")
    conn.list_hang = released()
    source = LibvirtSource("test:///default", conn=conn, call_timeout_s=0.05, per_device=True)
    with pytest.raises(SourceError, match="listing the domains overran"):
        source.read()


def test_a_domain_known_from_before_that_shut_off_is_not_there(released: Any) -> None:
    conn = FakeConn()
    conn.add("a", "io-heavy")
    gone = conn.add("b", "io-heavy")
    source = LibvirtSource("qemu:///system", conn=conn, call_timeout_s=5.0)
    source.read()
    conn.bulk_hang, conn.list_hang = released(), released()
    gone.record = {**gone.record, "state.state": 5}  # VIR_DOMAIN_SHUTOFF
    source.call_timeout_s = 0.05
    assert set(by_vm(source.read())) == {"a"}
    assert source.path == "bulk-per-domain"


def test_one_domain_answering_oddly_costs_only_its_own_counters() -> None:
    conn = FakeConn()
    conn.fills_groups = False
    conn.add("ok", "io-heavy")
    odd = conn.add("odd", "io-heavy")
    odd.block = ("garbage",)  # type: ignore[assignment]
    source = LibvirtSource("test:///default", conn=conn, call_timeout_s=5.0)
    readings = by_vm(source.read())
    assert readings["ok"].counters is not None
    assert readings["odd"].counters is None
