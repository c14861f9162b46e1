"""`vmlb bench pipeline` end to end with tiny parameters against the session broker.

Checks the JSON has every headline number, positive, and that no pre-loaded job was lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kafka.admin import KafkaAdminClient

KEYS = (
    "dispatch_per_s",
    "passthrough_per_s",
    "dispatch_vs_passthrough",
    "p99_submit_to_queue_ms",
    "telemetry_samples_per_s",
    "faust_noop_per_s",
    "telemetry_vs_faust_noop",
    "rss_mib_per_1000_vms",
)


def test_bench_pipeline_json(kafka_bootstrap: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMLB_")}
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli.main",
            "bench",
            "pipeline",
            "--json",
            "--broker",
            kafka_bootstrap,
            "--jobs",
            "300",
            "--rates",
            "200",
            "--rate-seconds",
            "1",
            "--vms",
            "60",
            "--samples",
            "2000",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert isinstance(result[key], (int, float)), key
    for key in (
        "dispatch_per_s",
        "passthrough_per_s",
        "telemetry_samples_per_s",
        "faust_noop_per_s",
    ):
        assert result[key] > 0, key
    assert result["p99_submit_to_queue_ms"] >= 0
    # Every pre-loaded job reached a VM's queue: a benchmark that loses jobs is wrong.
    assert result["dispatch"]["jobs"] == 300
    assert result["dispatch"]["queued"] == 300
    assert result["jobs_lost"] == 0
    assert result["worker_waiting"] == 0
    assert result["latency"][0]["queued"] == result["latency"][0]["jobs"] == 200
    # The run deleted its topics.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        leftovers = [
            t
            for t in admin.list_topics()
            if t.startswith(result["topic_prefix"]) or t.startswith(result["app_id"])
        ]
    finally:
        admin.close()
    assert leftovers == []
