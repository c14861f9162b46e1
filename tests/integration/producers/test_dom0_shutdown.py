"""`vmlb dom0` stopped while the broker is away: one warning line, no traceback (issue #15, 8).

kafka-python 3.0.12's `KafkaProducer.close(timeout)` raises when records are undelivered and
leaves the producer open; at exit its `__del__` failed again and printed a traceback
(producers.kafka_edge.close_producer works around it).

This test has a broker of its own (it kills it): a single node on free ports.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline.events import IoSample
from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.ports import free_port_run
from pipeline.settings import KafkaSettings
from pipeline.topics import apply_topics, load_topics
from tests.integration.producers.kafka_reading import TopicReader
from tests.integration.producers.libvirt_world import NODE_URI

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(300)
def test_a_dom0_stopped_during_an_outage_says_so_in_one_line(tmp_path):
    cluster = LocalCluster(tmp_path / "kafka", port=free_port_run(2))
    kafka = KafkaSettings(broker=cluster.start(), topic_prefix=f"d{uuid.uuid4().hex[:8]}.")
    topics = load_topics(prefix=kafka.topic_prefix)
    apply_topics(kafka, topics.all_specs())
    command = [
        sys.executable, "-m", "pipeline.cli.main", "dom0",
        "--broker", kafka.broker, "--topic-prefix", kafka.topic_prefix,
        "--host-id", "node1", "--source", f"libvirt:{NODE_URI}", "--interval", "300ms",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        samples = TopicReader(kafka, topics.name("io-samples"), IoSample)
        samples.wait_for(lambda ev: len(ev) >= 4, what="samples delivered")
        samples.close()
        cluster.stop_node(1, kill=True)
        # The fault's set-up, not a wait for a result: a few samples made (one per 300 ms) and
        # handed to the producer, which holds them for a broker that is not there.
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        cluster.stop()
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Exception ignored" not in output, output[-3000:]
    undelivered = [line for line in output.splitlines() if "undelivered at close" in line]
    assert len(undelivered) == 1, output[-3000:]
