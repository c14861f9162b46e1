"""Reading libvirt's answers: stats records (as QEMU 7.2 / libvirt 9.0 give them), states,
domain XML devices, metadata."""

from __future__ import annotations

from pipeline.events import VmStatus
from producers.telemetry.libvirt_stats import (
    Nic,
    counters_from_record,
    devices_from_xml,
    fills_device_groups,
    job_type_from_metadata,
    status_from_record,
)

# A running QEMU domain with a virtio disk, an empty CD-ROM and a `type='user'` NIC.
FULL = {
    "state.state": 1, "state.reason": 1,
    "net.count": 1,  # the user NIC: no net.0.name, no counters (no host-side device)
    "block.count": 2,
    "block.0.name": "vda", "block.0.rd.reqs": 4042, "block.0.wr.reqs": 1010,
    "block.1.name": "hdc", "block.1.rd.reqs": 0, "block.1.wr.reqs": 0,
}  # fmt: skip
# The same domain while another client holds its job (NOWAIT): no block group at all.
JOB_HELD = {"state.state": 1, "state.reason": 1, "net.count": 1}
# ... and while our own earlier call holds it: the disks named, without counters.
JOB_HELD_NAMED = {
    "state.state": 1, "state.reason": 1, "net.count": 1,
    "block.count": 2, "block.0.name": "vda", "block.0.path": "/img", "block.1.name": "hdc",
}  # fmt: skip


def test_a_full_record_sums_every_disk_and_skips_nics_without_host_device() -> None:
    counters = counters_from_record(FULL)
    assert counters is not None
    assert (counters.block_rd_reqs, counters.block_wr_reqs) == (4042, 1010)
    assert (counters.net_rx_packets, counters.net_tx_packets) == (0, 0)


def test_tap_nics_count_their_packets() -> None:
    record = {
        "net.count": 2,
        "net.0.name": "vnet0", "net.0.rx.pkts": 10, "net.0.tx.pkts": 20,
        "net.1.name": "vnet1", "net.1.rx.pkts": 1, "net.1.tx.pkts": 2,
        "block.count": 0,
    }  # fmt: skip
    counters = counters_from_record(record)
    assert counters is not None
    assert (counters.net_rx_packets, counters.net_tx_packets) == (11, 22)


def test_records_without_request_counters_are_incomplete_never_zero() -> None:
    assert counters_from_record(JOB_HELD) is None
    assert counters_from_record(JOB_HELD_NAMED) is None
    one_disk_missing = {**FULL}
    del one_disk_missing["block.1.wr.reqs"]
    assert counters_from_record(one_disk_missing) is None
    tap_unreadable = {"net.count": 1, "net.0.name": "vnet0", "block.count": 0}
    assert counters_from_record(tap_unreadable) is None  # its device is going away


def test_counters_that_are_not_integers_are_incomplete() -> None:
    assert counters_from_record({**FULL, "block.0.rd.reqs": "4042"}) is None
    assert counters_from_record({**FULL, "block.0.rd.reqs": True}) is None


def test_a_domain_without_devices_counts_zero() -> None:
    counters = counters_from_record({"net.count": 0, "block.count": 0})
    assert counters is not None and counters.total_ops == 0


def test_drivers_that_leave_the_device_groups_empty_are_told_apart() -> None:
    assert fills_device_groups(FULL) and fills_device_groups(JOB_HELD)
    assert not fills_device_groups({"state.state": 1, "state.reason": 0})  # the test driver


def test_paused_and_pmsuspended_domains_are_paused() -> None:
    assert status_from_record({"state.state": 1}) is VmStatus.RUNNING
    assert status_from_record({"state.state": 3}) is VmStatus.PAUSED
    assert status_from_record({"state.state": 7}) is VmStatus.PAUSED
    assert status_from_record({"state.state": 4}) is VmStatus.RUNNING  # shutting down: still on
    assert status_from_record({}) is None


def test_devices_from_xml_use_target_dev_else_mac() -> None:
    xml = """<domain><devices>
      <disk type='file' device='disk'><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><target dev='hdc'/></disk>
      <interface type='network'><mac address='52:54:00:00:00:01'/><target dev='vnet3'/></interface>
      <interface type='user'><mac address='52:54:00:00:00:02'/></interface>
    </devices></domain>"""
    assert devices_from_xml(xml) == (
        [Nic("vnet3", named=True), Nic("52:54:00:00:00:02", named=False)],
        ["vda", "hdc"],
    )


def test_domain_without_devices() -> None:
    assert devices_from_xml("<domain><name>x</name></domain>") == ([], [])


def test_job_type_metadata() -> None:
    assert job_type_from_metadata("<job-type>io-heavy</job-type>") == "io-heavy"
    assert (
        job_type_from_metadata(
            '<vmlb:job-type xmlns:vmlb="https://vmlb.dev/ns"> mixed </vmlb:job-type>'
        )
        == "mixed"
    )
    assert job_type_from_metadata("<job-type/>") is None
    assert job_type_from_metadata("<other>x</other>") is None
    assert job_type_from_metadata("not xml") is None
