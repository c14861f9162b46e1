"""HostSample (pipeline.events): one record for a host's VMs, and reading either telemetry form."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import EventError
from pipeline.events import (
    MAX_HOST_SAMPLE_VMS,
    HostSample,
    IoCounters,
    IoSample,
    read_io_samples,
    read_telemetry,
)
from pipeline.topics.partitioning import partition_for_key


def sample(vm_id: str, io_ops: int = 10, host_id: str = "h1", at: float = 1000.0) -> IoSample:
    return IoSample(
        host_id=host_id,
        vm_id=vm_id,
        sampled_at=at,
        interval_s=1.0,
        io_ops=io_ops,
        counters=IoCounters(block_rd_reqs=io_ops, net_rx_packets=3),
    )


def record(*vm_ids: str) -> dict:
    return json.loads(HostSample.of([sample(vm, 10 + i) for i, vm in enumerate(vm_ids)]).to_bytes())


def test_a_host_sample_stands_for_exactly_the_io_samples_it_was_built_of():
    samples = [sample("a1", 5), sample("a2", 7)]
    host = HostSample.of(samples)
    assert host.key() == b"h1"
    assert HostSample.from_bytes(host.to_bytes()).samples() == samples
    reading = read_telemetry(host.to_bytes())
    assert (reading.samples, reading.refused, reading.host_id) == (samples, (), "h1")
    assert read_io_samples(host.to_bytes()) == samples


def test_an_io_sample_still_reads_as_one_sample():
    one = sample("a1")
    reading = read_telemetry(one.to_bytes())
    assert (reading.samples, reading.host_sample, reading.entries) == ([one], False, 1)


def test_samples_of_several_hosts_or_times_are_not_one_host_sample():
    with pytest.raises(ValueError, match="share one host_id"):
        HostSample.of([sample("a1"), sample("b1", host_id="h2")])
    with pytest.raises(ValueError, match="share one host_id"):
        HostSample.of([sample("a1"), sample("a2", at=1001.0)])
    with pytest.raises(ValueError, match="at least one"):
        HostSample.of([])


def test_a_host_sample_holds_each_vm_once_and_a_bounded_number_of_vms():
    twice = record("a1", "a2")
    twice["vms"].append(twice["vms"][0])
    with pytest.raises(EventError, match="more than once"):
        HostSample.from_dict(twice)
    many = record("a1")
    many["vms"] = [{**many["vms"][0], "vm_id": f"v{i}"} for i in range(MAX_HOST_SAMPLE_VMS + 1)]
    with pytest.raises(EventError, match="vms: List should have at most 1000 items"):
        HostSample.from_dict(many)
    with pytest.raises(EventError, match="vms: List should have at least 1 item"):
        HostSample.from_dict({**many, "vms": []})


def test_one_bad_vm_entry_is_refused_and_the_others_stand():
    data = record("a1", "a2", "a3")
    data["vms"][1]["io_ops"] = -1
    data["vms"][2]["counters"]["block_rd_reqs"] = 1.5
    data["vms"].append(data["vms"][0])  # a1 again
    data["vms"].append("not an entry")
    reading = read_telemetry(json.dumps(data).encode())
    assert [s.vm_id for s in reading.samples] == ["a1"]
    assert reading.samples[0] == sample("a1", 10)
    assert reading.refused == (
        "vms[1] (a2): io_ops: Input should be greater than or equal to 0",
        "vms[2] (a3): counters.block_rd_reqs: Input should be a valid integer",
        "vms[3] (a1): repeated (first at vms[0])",
        "vms[4]: (message): Input should be a valid dictionary or instance of VmIo",
    )
    assert reading.entries == 5
    with pytest.raises(EventError, match=r"HostSample: vms\[1\] \(a2\): io_ops"):
        read_io_samples(json.dumps(data).encode())  # a reader that takes a message whole


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"host_id": "no spaces"}, "host_id: String should match pattern"),
        ({"sampled_at": "soon"}, "sampled_at: Input should be a valid number"),
        ({"schema_version": 2}, "schema_version: Input should be 1"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
        ({"vms": {"a1": {}}}, "vms: Input should be a valid list"),
        ({"vms": [{}] * (MAX_HOST_SAMPLE_VMS + 1)}, "vms: List should have at most 1000"),
    ],
)
def test_a_host_sample_with_a_bad_envelope_is_refused_whole(change, reason):
    data = {**record("a1"), **change}
    with pytest.raises(EventError, match=r"^HostSample: ") as refused:
        read_telemetry(json.dumps(data).encode())
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "IoSample: not JSON"),
        (b'{"vms": [', "HostSample: not JSON"),
        (b"[]", "IoSample: expected a JSON object"),
        (b"[" * 5000 + b"]" * 5000, "IoSample: not JSON"),
        (b'{"vms": ' + b"[" * 5000 + b"]" * 5000 + b"}", "HostSample: not JSON"),
        (b"x" * 1_000_001, "IoSample: message of 1000001 bytes is over"),
    ],
)
def test_reading_telemetry_is_total(raw, reason):
    with pytest.raises(EventError) as refused:
        read_telemetry(raw)
    assert str(refused.value).startswith(reason)


def test_the_documented_example_groups_vms_of_one_partition():
    # docs/events.md says its example's VMs share partition 0 of the default 6.
    assert {partition_for_key(vm, 6) for vm in ("vm-a1", "vm-a2", "vm-a6")} == {0}
