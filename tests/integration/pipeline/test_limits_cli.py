"""`vmlb limit set|clear` and `vmlb calibrate` against the real broker, run as the command.

Each test reads the `limits` topic back and checks key, source and value, and feeds the records
to a FleetView, which is how every dispatcher will see them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from kafka import KafkaProducer

from pipeline.events import (
    IoCounters,
    IoSample,
    LimitField,
    LimitScope,
    LimitSetting,
    LimitSource,
)
from pipeline.fleet.view import FleetView, Sourced
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, topics_of
from pipeline.topics.reader import read_all


def vmlb(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VMLB_BROKER": kafka.broker,
        "VMLB_TOPIC_PREFIX": kafka.topic_prefix,
        "COLUMNS": "200",  # rich wraps tables at 80 columns when not on a terminal
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_limits(kafka: KafkaSettings) -> list[tuple[bytes, LimitSetting]]:
    return [
        (record.key, LimitSetting.from_bytes(record.value))
        for record in read_all(kafka, topics_of(kafka).name("limits"), timeout_s=10.0)
    ]


def view_of(records: list[tuple[bytes, LimitSetting]]) -> FleetView:
    view = FleetView()
    for key, setting in records:
        view.apply("limits", key, setting.to_bytes())
    return view


def test_limit_set_then_clear_a_host_override(kafka_settings: KafkaSettings, topics: Topics):
    before = time.time()
    done = vmlb(kafka_settings, "limit", "set", "--host", "h1", "--io-limit", "5000")
    assert done.returncode == 0, done.stderr
    assert "host h1: io_limit_ops_per_s = 5000 (operator override)" in done.stdout

    [(key, setting)] = read_limits(kafka_settings)
    assert key == b"host/h1/io_limit_ops_per_s/operator"
    assert (setting.scope, setting.target_id) == (LimitScope.HOST, "h1")
    assert (setting.field, setting.source) == (LimitField.IO_LIMIT, LimitSource.OPERATOR)
    assert setting.value == 5000.0
    assert before <= setting.set_at <= time.time()
    assert view_of(read_limits(kafka_settings)).host_limit("h1") == Sourced(5000.0, "operator")

    done = vmlb(kafka_settings, "limit", "clear", "--host", "h1")
    assert done.returncode == 0, done.stderr
    assert "host h1: io_limit_ops_per_s override cleared" in done.stdout

    records = read_limits(kafka_settings)
    assert [key for key, _ in records] == [b"host/h1/io_limit_ops_per_s/operator"] * 2
    cleared = records[1][1]
    assert (cleared.source, cleared.value) == (LimitSource.OPERATOR, None)
    assert view_of(records).host_limit("h1") == Sourced(None, None)
    assert view_of(records).limits == {}


def test_limit_set_a_vm_io_per_job(kafka_settings: KafkaSettings, topics: Topics):
    done = vmlb(kafka_settings, "limit", "set", "--vm", "a1", "--io-per-job", "40")
    assert done.returncode == 0, done.stderr
    [(key, setting)] = read_limits(kafka_settings)
    assert key == b"vm/a1/io_per_job/operator"
    assert (setting.scope, setting.field, setting.value) == (
        LimitScope.VM,
        LimitField.IO_PER_JOB,
        40.0,
    )
    assert view_of([(key, setting)]).vm_io_per_job("a1") == Sourced(40.0, "operator")


REFUSALS = [
    (("--vm", "a1", "--io-limit", "5000"), "--io-limit applies to a --host"),
    (("--host", "h1", "--io-per-job", "40"), "--io-per-job applies to a --vm"),
    (("--host", "h1", "--vm", "a1", "--io-limit", "5"), "give exactly one of --host or --vm"),
    (("--host", "h1"), "give --io-limit (with --host) or --io-per-job (with --vm)"),
    (("--host", "h1", "--io-limit", "0"), "Invalid value for '--io-limit'"),
]


def test_limit_set_refuses_a_mismatched_target_and_publishes_nothing(
    kafka_settings: KafkaSettings, topics: Topics
):
    for args, message in REFUSALS:
        done = vmlb(kafka_settings, "limit", "set", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert read_limits(kafka_settings) == []


# --- calibrate --------------------------------------------------------------------------------

#: Event time of the first sample: an odd whole second, so h2's two-second ticks sit at half
#: intervals (T0 / 2 = k + 0.5), where rounding half to even once merged pairs of ticks.
T0 = float(int(time.time()) // 2 * 2 - 101)


def produce_samples(kafka: KafkaSettings) -> None:
    """Three hosts' I/O, hand-chosen so the percentile is easy to check.

    h1, 20 one-second intervals: a1 at 100, 200, ..., 2000 ops/s and a2 at 500 ops/s, so the
        summed rates are 600, 700, ..., 2500; nearest-rank p95 = ceil(0.95 x 20) = 19th = 2400,
        limit 2400 x 0.9 = 2160 (the peak, 2500, is one interval and is ignored).
    h2, 6 two-second intervals: b1 with 600, 800, ..., 1600 ops per interval = 300..800 ops/s;
        p95 = ceil(5.7) = 6th = 800, limit 720 (peak 800: no two ticks summed into one).
    h3, 3 intervals: too few (5 needed), so no limit.
    """
    producer = KafkaProducer(acks="all", **kafka.to_kafka_python())
    topic = topics_of(kafka).name("io-samples")

    def send(host_id: str, vm_id: str, at: float, interval_s: float, io_ops: int) -> None:
        sample = IoSample(
            host_id=host_id,
            vm_id=vm_id,
            sampled_at=at,
            interval_s=interval_s,
            io_ops=io_ops,
            counters=IoCounters(block_rd_reqs=io_ops),
        )
        producer.send(topic, key=sample.key(), value=sample.to_bytes())

    for i in range(20):
        send("h1", "a1", T0 + i, 1.0, 100 * (i + 1))
        send("h1", "a2", T0 + i, 1.0, 500)
    for i in range(6):
        send("h2", "b1", T0 + 2 * i, 2.0, 600 + 200 * i)
    for i in range(3):
        send("h3", "c1", T0 + i, 1.0, 50)
    producer.send(topic, key=b"junk", value=b"not a sample")  # ignored, and said so
    producer.flush(timeout=30)
    producer.close()


def test_calibrate_publishes_p95_times_headroom_per_host_and_dry_run_publishes_nothing(
    kafka_settings: KafkaSettings, topics: Topics
):
    produce_samples(kafka_settings)

    dry = vmlb(kafka_settings, "calibrate", "--since", "60", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing published" in dry.stdout
    assert "2160" in dry.stdout
    assert read_limits(kafka_settings) == []

    before = time.time()
    done = vmlb(kafka_settings, "calibrate", "--since", "60")
    assert done.returncode == 0, done.stderr
    assert "ignored 1 malformed I/O samples" in done.stderr
    assert (
        f"published 2 calibrated limit(s) to {topics_of(kafka_settings).name('limits')}"
        in done.stdout
    )
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if "│ h" in line}
    assert rows.keys() == {"h1", "h2", "h3"}
    assert "only 3 sampling intervals; need 5 (run longer)" in rows["h3"]
    assert rows["h3"].split("│")[2].strip() == "-"  # no limit for h3

    records = dict(read_limits(kafka_settings))
    assert set(records) == {
        b"host/h1/io_limit_ops_per_s/calibrated",
        b"host/h2/io_limit_ops_per_s/calibrated",
    }
    h1 = records[b"host/h1/io_limit_ops_per_s/calibrated"]
    h2 = records[b"host/h2/io_limit_ops_per_s/calibrated"]
    assert (h1.scope, h1.target_id, h1.field) == (LimitScope.HOST, "h1", LimitField.IO_LIMIT)
    assert h1.source is LimitSource.CALIBRATED
    assert h1.value == pytest.approx(2160.0)
    assert h1.detail == "p95 of the summed VM I/O rate over 20 intervals x headroom 0.9"
    assert h2.value == pytest.approx(720.0)
    assert rows["h2"].split("│")[3].strip() == "800"  # peak: no two ticks summed
    assert h2.detail == "p95 of the summed VM I/O rate over 6 intervals x headroom 0.9"
    assert before <= h1.set_at <= time.time()

    view = view_of(list(records.items()))
    assert view.host_limit("h1") == Sourced(pytest.approx(2160.0), "calibrated")
    assert view.host_limit("h3") == Sourced(None, None)
