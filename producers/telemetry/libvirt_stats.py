"""Pure reading of what libvirt answers: stats records, domain states, domain XML, metadata.

No connection here; `libvirt_source` makes the calls. The stats record fields are those of
`virConnectGetAllDomainStats` (groups `state`, `interface`, `block`):

    state.state              virDomainState (1 running, 3 paused, 7 pmsuspended, ...)
    net.count                NICs of the domain; net.N.name is the host-side device, absent
                             for a NIC without one (QEMU's `type='user'`); net.N.rx.pkts,
                             net.N.tx.pkts its counters (read from the host device, no job)
    block.count              disks; block.N.rd.reqs, block.N.wr.reqs their request counters
                             (read from QEMU's monitor: they need the domain's job)

A record may come without the counters of the job-bound groups. With
`VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT`, a domain whose job another call holds answers at
once without them; during `virsh destroy` too. Seen on QEMU 7.2 / libvirt 9.0: sometimes no
`block.*` field at all, sometimes `block.count` and each disk's name with no counters. Such a
record is *incomplete*: reading its missing counters as 0 would look like a counter restart,
and the next full record like the VM's whole lifetime of I/O in one interval.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.events import IoCounters, VmStatus

#: The XML namespace of vmlb's domain metadata.
VMLB_NS = "https://vmlb.dev/ns"

#: virDomainState values of a domain that exists but runs no guest code: paused by an
#: operator, a migration or an I/O error (3), or suspended to RAM by its guest (7).
_NOT_RUNNING_STATES = {3, 7}


def fills_device_groups(record: Mapping[str, Any]) -> bool:
    """Whether the driver answered the interface/block groups at all (QEMU, libxl do; the test
    driver answers only `state`, and is then read per device instead)."""
    return "net.count" in record or "block.count" in record


def counters_from_record(record: Mapping[str, Any]) -> IoCounters | None:
    """Sum a stats record's per-NIC packets and per-disk requests; None if the record lacks a
    counter it should have (see the module docstring): never a guessed 0."""
    if "net.count" not in record or "block.count" not in record:
        return None
    rx = tx = rd = wr = 0
    for i in range(_count(record, "net.count")):
        if f"net.{i}.name" not in record:
            continue  # no host-side device, no counters (e.g. QEMU user networking)
        nic_rx, nic_tx = _counter(record, f"net.{i}.rx.pkts"), _counter(record, f"net.{i}.tx.pkts")
        if nic_rx is None or nic_tx is None:
            return None  # the device is there but could not be read (e.g. it is going away)
        rx += nic_rx
        tx += nic_tx
    for i in range(_count(record, "block.count")):
        disk_rd, disk_wr = (
            _counter(record, f"block.{i}.rd.reqs"),
            _counter(record, f"block.{i}.wr.reqs"),
        )
        if disk_rd is None or disk_wr is None:
            return None
        rd += disk_rd
        wr += disk_wr
    return IoCounters(net_rx_packets=rx, net_tx_packets=tx, block_rd_reqs=rd, block_wr_reqs=wr)


def status_from_state(state: int | None) -> VmStatus | None:
    """PAUSED for a domain that runs no guest code, RUNNING otherwise; None if not known."""
    if state is None:
        return None
    return VmStatus.PAUSED if state in _NOT_RUNNING_STATES else VmStatus.RUNNING


def status_from_record(record: Mapping[str, Any]) -> VmStatus | None:
    state = record.get("state.state")
    return status_from_state(int(state)) if isinstance(state, int) else None


@dataclass(frozen=True)
class Nic:
    """A NIC of a domain's live XML, as `virDomainInterfaceStats` is asked for it."""

    path: str
    #: Whether the XML names its host-side device (`<target dev>`); else `path` is its MAC,
    #: which some drivers resolve (the test driver) and others refuse (QEMU, for a NIC with
    #: no host-side device, answers "Interface name not provided").
    named: bool


def devices_from_xml(xml: str) -> tuple[list[Nic], list[str]]:
    """The NICs (target dev, else MAC) and disks (target dev) of a domain's XML."""
    root = ET.fromstring(xml)
    nics = []
    for iface in root.iterfind("./devices/interface"):
        target = iface.find("target")
        mac = iface.find("mac")
        if target is not None and target.get("dev"):
            nics.append(Nic(target.get("dev", ""), named=True))
        elif mac is not None and mac.get("address"):
            nics.append(Nic(mac.get("address", ""), named=False))
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


def _count(record: Mapping[str, Any], key: str) -> int:
    return _counter(record, key) or 0


def _counter(record: Mapping[str, Any], key: str) -> int | None:
    """A non-negative integer field, or None if absent or not an integer."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return max(value, 0)
