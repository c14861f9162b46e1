"""The pure parts of the libvirt source: bulk stats, domain XML devices, metadata."""

from __future__ import annotations

from producers.telemetry.libvirt_source import (
    counters_from_bulk_stats,
    devices_from_xml,
    job_type_from_metadata,
)


def test_bulk_stats_sum_every_nic_and_disk() -> None:
    stats = {
        "net.count": 2,
        "net.0.rx.pkts": 10, "net.0.tx.pkts": 20,
        "net.1.rx.pkts": 1, "net.1.tx.pkts": 2,
        "block.count": 1,
        "block.0.rd.reqs": 300, "block.0.wr.reqs": 40,
    }  # fmt: skip
    counters = counters_from_bulk_stats(stats)
    assert (counters.net_rx_packets, counters.net_tx_packets) == (11, 22)
    assert (counters.block_rd_reqs, counters.block_wr_reqs) == (300, 40)


def test_bulk_stats_of_a_domain_without_devices_are_zero() -> None:
    assert counters_from_bulk_stats({"net.count": 0, "block.count": 0}).total_ops == 0


def test_devices_from_xml_use_target_dev_else_mac() -> None:
    xml = """<domain><devices>
      <disk type='file' device='disk'><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><target dev='hdc'/></disk>
      <interface type='network'><mac address='52:54:00:00:00:01'/><target dev='vnet3'/></interface>
      <interface type='user'><mac address='52:54:00:00:00:02'/></interface>
    </devices></domain>"""
    assert devices_from_xml(xml) == (["vnet3", "52:54:00:00:00:02"], ["vda", "hdc"])


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
