"""`vmlb dom0 --source libvirt:qemu:///system` against real QEMU guests and the session's broker.

The guests (`qemu_host`) do block I/O only when told, in exact counts, so every number is
known: samples track the guest's I/O, counters match `virsh domblkstat`, suspend/resume,
metadata change, destroy and start are registered, a hung domain (QEMU stopped, its job held
by another client) does not freeze the telemetry of the others, and no sample is ever a burst.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.events import HostRegistration, IoSample, VmRegistration, VmStatus
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from producers.telemetry.libvirt_source import LibvirtSource
from tests.integration.producers.kafka_reading import TopicReader
from tests.integration.producers.qemu_host import (
    URI,
    VMLB_NS,
    BlockCounters,
    Guest,
    QemuHost,
    qemu_host,
    virsh,
)

REPO = Path(__file__).resolve().parents[3]
#: The largest I/O command any test gives: no sample may ever exceed it (plus boot reads).
LARGEST_COMMAND_OPS = 400
BOOT_OPS_AT_MOST = 50


@pytest.fixture(scope="module")
def qemu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuHost]:
    yield from qemu_host(tmp_path_factory.mktemp("qemu"))


@pytest.fixture(scope="module")
def guests(qemu: QemuHost) -> tuple[Guest, Guest]:
    """Two running guests with unique names: `io` (with a user NIC) and `hung`."""
    prefix = f"vmlb{uuid.uuid4().hex[:6]}"
    io = qemu.guest(f"{prefix}-io", job_type="io-heavy", user_nic=True)
    hung = qemu.guest(f"{prefix}-hung", job_type="cpu-heavy")
    for guest in (io, hung):
        guest.boot()  # both boot at once
    for guest in (io, hung):
        guest.wait_ready()
    return io, hung


def block(sample: IoSample) -> BlockCounters:
    return BlockCounters(sample.counters.block_rd_reqs, sample.counters.block_wr_reqs)


def of(samples: list[IoSample], vm_id: str) -> list[IoSample]:
    return [s for s in samples if s.vm_id == vm_id]


def latest(registrations: list[VmRegistration]) -> dict[str, VmRegistration]:
    return {r.vm_id: r for r in registrations}


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(0.2)


def said_unavailable(log_path: Path, vm_id: str) -> int:
    return log_path.read_text().count(f"{vm_id}: counters unavailable")


def last_said(log_path: Path, vm_id: str) -> str:
    """Dom0's last word on a VM's counters ("unavailable" or "back"), "" if none yet."""
    said = [line for line in log_path.read_text().splitlines() if f"{vm_id}: counters" in line]
    return said[-1] if said else ""


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.timeout(600)  # it boots the guests (the module's fixture) on a TCG-only host
def test_the_per_device_path_reads_a_qemu_domain_with_a_user_nic(
    guests: tuple[Guest, Guest],
) -> None:
    io, _ = guests
    source = LibvirtSource(URI, per_device=True, call_timeout_s=60.0)  # the path, not timing
    try:
        io.command("read 10")
        reading = {r.vm_id: r for r in source.read()}[io.name]
    finally:
        source.close()
    assert source.path == "per-device"
    # QEMU answers the user NIC's MAC with "Interface name not provided": skipped, not fatal.
    assert reading.counters is not None
    assert (reading.counters.block_rd_reqs, reading.counters.block_wr_reqs) == (
        io.blockstat().rd_reqs,
        io.blockstat().wr_reqs,
    )
    assert reading.counters.net_rx_packets == reading.counters.net_tx_packets == 0


@pytest.mark.timeout(600)
def test_dom0_meters_real_qemu_guests_through_pause_metadata_hang_and_restart(
    guests: tuple[Guest, Guest], kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    io, hung = guests
    log_path = tmp_path / "dom0.log"
    command = [
        sys.executable, "-m", "pipeline.cli.main", "dom0",
        "--broker", kafka_settings.broker, "--topic-prefix", kafka_settings.topic_prefix,
        "--host-id", "qemu1", "--source", f"libvirt:{URI}", "--interval", "500ms",
        "--io-limit", "5000",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    samples = TopicReader(kafka_settings, topics.name("io-samples"), IoSample)
    vms = TopicReader(kafka_settings, topics.name("vms"), VmRegistration)
    hosts = TopicReader(kafka_settings, topics.name("hosts"), HostRegistration)
    ours = {io.name, hung.name}
    try:
        # Registered from the domains' metadata; the host says it is read in bulk.
        registered = latest(
            vms.wait_for(lambda ev: ours <= set(latest(ev)), 60, "both guests registered")
        )
        assert {vm: (r.job_type, r.status) for vm, r in registered.items() if vm in ours} == {
            io.name: ("io-heavy", VmStatus.RUNNING),
            hung.name: ("cpu-heavy", VmStatus.RUNNING),
        }
        hosts.wait_for(lambda ev: ev[-1].telemetry_path == "bulk", 60, "telemetry path bulk")
        assert "telemetry path: bulk" in log_path.read_text()

        # Samples track the guest's I/O exactly, and its counters are domblkstat's.
        before = io.blockstat()
        samples.wait_for(
            lambda ev: any(block(s) == before for s in of(ev, io.name)), 60, "io at rest"
        )
        start = len(samples.events)
        io.command("read 300")
        io.command("write 100")
        after = io.blockstat()
        assert (after.rd_reqs - before.rd_reqs, after.wr_reqs - before.wr_reqs) == (300, 100)
        got = samples.wait_for(
            lambda ev: any(block(s) == after for s in of(ev[start:], io.name)),
            60,
            "a sample with domblkstat's counters",
        )
        window = of(got[start:], io.name)
        upto = next(i for i, s in enumerate(window) if block(s) == after)
        assert sum(s.io_ops for s in window[: upto + 1]) == 400
        assert all(s.io_ops == 0 for s in of(got[start:], hung.name))  # an idle guest

        # Suspend and resume: registered paused (serves no job), then running again.
        virsh("suspend", io.name)
        vms.wait_for(lambda ev: latest(ev)[io.name].status is VmStatus.PAUSED, 30, "paused")
        virsh("resume", io.name)
        vms.wait_for(lambda ev: latest(ev)[io.name].status is VmStatus.RUNNING, 30, "resumed")

        # A metadata change (live and persistent) is a new job type.
        virsh("metadata", io.name, VMLB_NS, "--key", "vmlb", "--set",
              "<job-type>mixed</job-type>", "--live", "--config")  # fmt: skip
        vms.wait_for(lambda ev: latest(ev)[io.name].job_type == "mixed", 30, "retyped")

        # A hung domain, twice: QEMU stopped (its monitor never answers, and Dom0's own call
        # is the one stuck on it); then stopped with another client holding its job. Either
        # way the other guest's new I/O must reach Kafka while it hangs.
        hang_and_check(hung, io, samples, vms, log_path, job_held_elsewhere=False)
        assert "bulk stats call overran" in log_path.read_text()
        hosts.wait_for(
            lambda ev: any(h.telemetry_path == "bulk-per-domain" for h in ev),
            30,
            "the host said it reads domain by domain meanwhile",
        )
        hosts.wait_for(lambda ev: ev[-1].telemetry_path == "bulk", 60, "and bulk again after")
        hang_and_check(hung, io, samples, vms, log_path, job_held_elsewhere=True)

        # Destroy and start: stopped, then running again as a new incarnation.
        io.destroy()
        vms.wait_for(lambda ev: latest(ev)[io.name].status is VmStatus.STOPPED, 30, "stopped")
        restarted_at = len(samples.events)
        io.start()
        vms.wait_for(
            lambda ev: (
                (latest(ev)[io.name].status, latest(ev)[io.name].job_type)
                == (VmStatus.RUNNING, "mixed")
            ),
            60,
            "started again",
        )
        io.command("read 50")
        again = io.blockstat()
        samples.wait_for(
            lambda ev: any(block(s) == again for s in of(ev[restarted_at:], io.name)),
            60,
            "the restarted guest metered",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=60)
        for reader in (samples, vms, hosts):
            reader.close()
    assert exit_code == 0
    # No false burst, ever: no sample is larger than the largest command (a counter misread as
    # restarted would publish a lifetime count: 800 ops for `io` by then).
    everything = [s for s in samples.events if s.vm_id in ours]
    assert max(s.io_ops for s in everything) <= LARGEST_COMMAND_OPS + BOOT_OPS_AT_MOST
    # No counter restart at all: `io` was registered stopped before it started again, so its
    # new run began from a fresh baseline; anything else said "restarted" falsely.
    restarts = [line for line in log_path.read_text().splitlines() if "I/O counters of" in line]
    assert restarts == []


def hang_and_check(
    hung: Guest,
    io: Guest,
    samples: TopicReader,
    vms: TopicReader,
    log_path: Path,
    *,
    job_held_elsewhere: bool,
) -> None:
    """Freeze `hung` while `io` does I/O: `io` is metered all along, `hung` stays registered
    and unmetered, and back from the hang its samples are its growth (none), never a burst."""
    hung.command("read 100")  # a lifetime count a false restart would publish as a burst
    before = hung.blockstat()
    samples.wait_for(
        lambda ev: any(block(s) == before for s in of(ev, hung.name)),
        60,
        "the hung guest's last I/O metered before it hangs",
    )
    said = said_unavailable(log_path, hung.name)
    frozen_at = len(samples.events)
    hung.freeze()
    holder = (
        subprocess.Popen(
            ["virsh", "-c", URI, "domblkstat", hung.name, "vda"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if job_held_elsewhere
        else None
    )
    try:
        wait_until(
            lambda: (
                said_unavailable(log_path, hung.name) > said
                and "unavailable" in last_said(log_path, hung.name)
            ),
            30,
            "dom0 says the hung guest's counters are unavailable",
        )
        io.command("read 200")
        during = io.blockstat()
        samples.wait_for(
            lambda ev: any(block(s) == during for s in of(ev[frozen_at:], io.name)),
            60,
            "the other guest's I/O while one hangs",
        )
        assert stopped(hung.qemu_pid()), "the hung guest ran meanwhile: not a hang"
        assert latest(vms.poll())[hung.name].status is VmStatus.RUNNING  # still there
        io_during = of(samples.events[frozen_at:], io.name)
        gaps = [b.sampled_at - a.sampled_at for a, b in itertools.pairwise(io_during)]
        assert max(gaps, default=0.0) < 10.0, f"io's telemetry stalled {max(gaps):.1f}s"
    finally:
        hung.thaw()
        if holder is not None:
            holder.wait(timeout=60)
    after = hung.blockstat()
    assert after == before  # it was frozen: no I/O
    thawed_at = len(samples.events)
    samples.wait_for(
        lambda ev: any(block(s) == after for s in of(ev[thawed_at:], hung.name)),
        60,
        "the hung guest metered again",
    )
    # Its growth over the gap (none), never its lifetime count (over 100).
    assert all(s.io_ops == 0 for s in of(samples.events[frozen_at:], hung.name))
