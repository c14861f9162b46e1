"""`vmlb host` end to end: guests as processes sharing one finite I/O channel, its Dom0 reading
the per-guest counters, and a clean stop that leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pipeline.events import IoSample, JobStatus, QueuedJob, VmRegistration, VmStatus
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from producers.emulated.client import TcpIoChannel, read_stats
from tests.integration.producers.kafka_reading import TopicReader

REPO = Path(__file__).resolve().parents[3]
CAPACITY_OPS_PER_S = 1000.0
GUESTS = ("e1", "e2", "e3")


def children_of(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ended(statuses: list[JobStatus]) -> list[JobStatus]:
    return [s for s in statuses if s.terminal]


def service_s(status: JobStatus) -> float:
    assert status.started_at is not None and status.finished_at is not None
    return status.finished_at - status.started_at


def test_guests_slow_down_together_when_their_host_is_saturated(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    command = [
        sys.executable, "-m", "pipeline.cli.main", "host",
        "--broker", kafka_settings.broker, "--topic-prefix", kafka_settings.topic_prefix,
        "--id", "hostA", "--io-capacity", str(CAPACITY_OPS_PER_S),
        *[arg for vm in GUESTS for arg in ("--vm", f"{vm}:io-heavy")],
        "--listen", "127.0.0.1:0", "--dom0-interval", "0.5", "--state-dir", str(tmp_path),
        "--guest-grace", "2",
    ]  # fmt: skip
    host = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    # The guests report each job's end on job-status (the dispatcher would forward it).
    completions = TopicReader(kafka_settings, topics.name("job-status"), JobStatus)
    vms = TopicReader(kafka_settings, topics.name("vms"), VmRegistration)
    samples = TopicReader(kafka_settings, topics.name("io-samples"), IoSample)
    producer = KafkaProducer(**kafka_settings.to_kafka_python())

    def dispatch(vm_id: str, job_id: str) -> None:
        now = time.time()
        job = QueuedJob(
            job_id=job_id, job_type="io-heavy", payload={"io_ops": 200, "cpu_ms": 0}, vm_id=vm_id,
            host_id="hostA", submitted_at=now, dispatched_at=now, policy="test",
        )  # fmt: skip
        producer.send(topics.queue_topic(vm_id).name, job.to_bytes(), key=job.key())

    try:
        assert host.stdout is not None
        first_line = host.stdout.readline()
        match = re.search(r"I/O channel at (\S+)", first_line)
        assert match, first_line
        address = match.group(1)
        # Dom0 registers the three guests (and creates their queues) once they run.
        vms.wait_for(
            lambda ev: {v.vm_id for v in ev if v.status is VmStatus.RUNNING} >= set(GUESTS),
            what="guests up",
        )

        # Alone: one guest, jobs one after another; nobody else uses the channel.
        for i in range(3):
            dispatch("e1", f"alone-{i}")
        producer.flush()
        done = ended(completions.wait_for(lambda ev: len(ended(ev)) >= 3, what="jobs alone"))
        alone_s = statistics.median(service_s(c) for c in done)

        # Together: all three guests at once ask for three times what the host serves.
        served_before, wall_before = read_stats(address)["served_ops"], time.monotonic()
        for i in range(4):
            for vm_id in GUESTS:
                dispatch(vm_id, f"busy-{vm_id}-{i}")
        producer.flush()
        done = ended(
            completions.wait_for(lambda ev: len(ended(ev)) >= 15, what="jobs under contention")
        )
        served_after, wall_after = read_stats(address)["served_ops"], time.monotonic()
        # Jobs that ran while the other two guests were also busy (not the last stragglers).
        contended_s = statistics.median(
            service_s(c)
            for c in done
            if c.job_id.startswith("busy-") and not c.job_id.endswith("-3")
        )

        # The Dom0 of this host metered each guest's I/O through the same counters.
        stats = read_stats(address)
        metered = samples.wait_for(
            lambda ev: all(
                any(
                    s.vm_id == vm
                    and s.counters.total_ops
                    == stats["vms"][vm]["counters"]["block_rd_reqs"]
                    + stats["vms"][vm]["counters"]["block_wr_reqs"]
                    for s in ev
                )
                for vm in GUESTS
            ),
            what="Dom0 samples matching the channel's counters",
        )
    finally:
        producer.close()
        pids = children_of(host.pid)
        host.send_signal(signal.SIGTERM)
        code = host.wait(timeout=60)
        if code is None:
            os.killpg(host.pid, signal.SIGKILL)
    assert code == 0
    assert pids and not any(alive(pid) for pid in pids)  # guests and Dom0 are gone
    # Every guest waited for the others: the contended jobs took about three times as long.
    assert contended_s / alone_s > 1.8
    # The channel never served more than its capacity (a small burst allowance aside).
    assert (served_after - served_before) / (wall_after - wall_before) <= CAPACITY_OPS_PER_S * 1.1
    assert sum(s.io_ops for s in metered if s.vm_id in GUESTS) <= stats["served_ops"]
    final = vms.wait_for(
        lambda ev: all({v.vm_id: v for v in ev}[vm].status is VmStatus.STOPPED for vm in GUESTS),
        what="guests registered stopped after the host stopped",
    )
    assert {v.host_id for v in final} == {"hostA"}
    for reader in (completions, vms, samples):
        reader.close()


def test_channel_throughput_stays_within_capacity_for_many_clients() -> None:
    """The backend alone: six client threads asking as fast as they can."""
    import asyncio

    from producers.emulated.channel import IoChannelModel
    from producers.emulated.protocol import Address
    from producers.emulated.server import ChannelServer, GuestInfo

    capacity = 2000.0
    guests = {f"c{i}": GuestInfo("io-heavy", running=True) for i in range(6)}
    loop = asyncio.new_event_loop()
    # No collapse here: this is about the server keeping to the model's rate, not the model.
    server = ChannelServer("hostB", IoChannelModel(capacity, collapse=0.0), guests)
    address = loop.run_until_complete(server.start(Address(host="127.0.0.1", port=0)))
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    waited: dict[str, float] = {}

    def client(vm_id: str) -> None:
        channel = TcpIoChannel(address, vm_id)
        waited[vm_id] = sum(channel.request(100, "block_rd").waited_s for _ in range(10))
        channel.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(vm,)) for vm in guests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed_s = time.monotonic() - started
    stats = read_stats(address)
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(timeout=10)
    assert stats["served_ops"] == 6 * 10 * 100
    assert stats["served_ops"] / elapsed_s <= capacity * 1.1
    assert (
        stats["served_ops"] / elapsed_s >= capacity * 0.5
    )  # the channel, not Python, was the limit
    assert all(vm["counters"]["block_rd_reqs"] == 1000 for vm in stats["vms"].values())
    # Fair shares: no guest waited much longer than another.
    assert max(waited.values()) / min(waited.values()) < 1.5


def serve_in_a_thread(model: object, guests: dict) -> tuple[object, object, object]:
    import asyncio

    from producers.emulated.protocol import Address
    from producers.emulated.server import ChannelServer

    loop = asyncio.new_event_loop()
    server = ChannelServer("hostC", model, guests)  # type: ignore[arg-type]
    address = loop.run_until_complete(server.start(Address(host="127.0.0.1", port=0)))
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    return loop, server, address


def stop_serving(loop: object, server: object) -> None:
    import asyncio

    asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)  # type: ignore[attr-defined]
    loop.call_soon_threadsafe(loop.stop)  # type: ignore[attr-defined]


def timed_requests(address: object, vm_ids: list[str], ops: int) -> dict[str, float]:
    """Each VM asks `ops` at once from its own thread; the seconds each took."""
    took: dict[str, float] = {}
    start = threading.Barrier(len(vm_ids))

    def client(vm_id: str) -> None:
        channel = TcpIoChannel(address, vm_id)  # type: ignore[arg-type]
        start.wait()
        began = time.monotonic()
        channel.request(ops, "block_rd")
        took[vm_id] = time.monotonic() - began
        channel.close()

    threads = [threading.Thread(target=client, args=(vm,)) for vm in vm_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return took


def test_device_caps_bound_each_guest_and_only_several_busy_ones_collapse_the_host() -> None:
    """Real sockets and timers: a guest runs at its device's rate; guests whose devices fit
    the channel together do not slow each other; past capacity all slow and goodput is lost,
    by the collapse formula the simulator uses."""
    from producers.emulated.channel import IoChannelModel
    from producers.emulated.collapse import effective_capacity_ops_per_s
    from producers.emulated.server import GuestInfo

    capacity = 1000.0
    caps = {"d1": 400.0, "d2": 400.0, "d3": 400.0}
    model = IoChannelModel(capacity, collapse=0.5, device_ops_per_s=caps)
    guests = {vm: GuestInfo("io-heavy", running=True) for vm in caps}
    loop, server, address = serve_in_a_thread(model, guests)
    try:
        alone = timed_requests(address, ["d1"], 200)  # 200 ops at 400 ops/s: 0.5 s
        pair = timed_requests(address, ["d1", "d2"], 200)  # 800 <= 1000: still 0.5 s each
        before = read_stats(address)
        trio = timed_requests(address, ["d1", "d2", "d3"], 200)  # 1200 > 1000: collapse
        after = read_stats(address)
    finally:
        stop_serving(loop, server)
    assert alone["d1"] == pytest.approx(0.5, rel=0.2)
    assert max(pair.values()) == pytest.approx(0.5, rel=0.2)
    # D = 1200 on C = 1000: the channel delivers C / (1 + 0.5 x 0.2) = 909 ops/s, 303 each:
    # 200 ops take 0.66 s instead of 0.5.
    delivered = effective_capacity_ops_per_s(1200.0, capacity, 0.5)
    assert min(trio.values()) == pytest.approx(200 / (delivered / 3), rel=0.2)
    lost = after["lost_ops"] - before["lost_ops"]
    asked = after["asked_ops"] - before["asked_ops"]
    served = after["served_ops"] - before["served_ops"]
    assert served == pytest.approx(600.0)
    assert asked == pytest.approx(1200.0 * 600.0 / delivered, rel=0.05)
    assert lost == pytest.approx((capacity - delivered) * 600.0 / delivered, rel=0.05)
    assert after["vms"]["d1"]["device_ops_per_s"] == 400.0
