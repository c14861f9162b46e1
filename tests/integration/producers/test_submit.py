"""Job submission against the real broker: the Python API, the command, and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.events import JobSubmission
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics
from producers.submit import Submitter
from tests.integration.producers.kafka_reading import TopicReader

REPO = Path(__file__).resolve().parents[3]


def vmlb(settings: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "pipeline.cli.main", "submit",
        "--broker", settings.broker, "--topic-prefix", settings.topic_prefix, *args,
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_api_and_command_submit_keyed_jobs(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    with Submitter(kafka_settings) as submitter:
        generated = submitter.submit("io-heavy", {"io_ops": 400}, deadline_s=60)
        assert submitter.submit("cpu-heavy", job_id="my-job-1") == "my-job-1"
    one = vmlb(kafka_settings, "--type", "mixed", "--payload", '{"cpu_ms": 5}', "--deadline", "30")
    assert one.returncode == 0, one.stderr
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text('{"job_type": "io-heavy", "job_id": "f-1"}\n\n{"job_type": "cpu-heavy"}\n')
    from_file = vmlb(kafka_settings, "--file", str(jobs_file))
    assert from_file.returncode == 0, from_file.stderr
    load = vmlb(
        kafka_settings,
        "--rate",
        "200",
        "--count",
        "20",
        "--mix",
        "io-heavy=1,cpu-heavy=1",
        "--seed",
        "3",
    )
    assert load.returncode == 0, load.stderr

    reader = TopicReader(kafka_settings, topics.name("jobs"), JobSubmission)
    got = reader.wait_for(lambda ev: len(ev) >= 2 + 1 + 2 + 20, what="every submission")
    reader.close()
    by_id = {j.job_id: j for j in got}
    assert len(by_id) == len(got) == 25  # every job got its own id
    assert by_id[generated].payload == {"io_ops": 400} and by_id[generated].deadline_s == 60
    assert by_id["my-job-1"].job_type == "cpu-heavy"
    assert by_id[one.stdout.strip()].payload == {"cpu_ms": 5}
    assert "f-1" in by_id and from_file.stdout.split()[0] == "f-1"
    assert all(j.submitted_at is not None for j in got)
    assert all(key == (value and json.loads(value)["job_id"]).encode() for key, value in reader.raw)


def test_invalid_input_is_refused_naming_the_field_and_nothing_is_sent(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    bad_type = vmlb(kafka_settings, "--type", "not a type")
    assert bad_type.returncode == 2 and "job_type" in bad_type.stderr
    bad_file = tmp_path / "jobs.jsonl"
    bad_file.write_text('{"job_type": "a"}\n{"job_type": "b", "deadline_s": -5}\n')
    refused = vmlb(kafka_settings, "--file", str(bad_file))
    assert refused.returncode == 2
    assert "line 2" in refused.stderr and "deadline_s" in refused.stderr
    bad_mix = vmlb(kafka_settings, "--rate", "5", "--count", "2", "--mix", "io-heavy")
    assert bad_mix.returncode == 2 and "--mix" in bad_mix.stderr
    # A marker job proves the topic was readable and that nothing before it was sent.
    with Submitter(kafka_settings) as submitter:
        submitter.submit("marker", job_id="marker")
    reader = TopicReader(kafka_settings, topics.name("jobs"), JobSubmission)
    got = reader.wait_for(lambda ev: any(j.job_id == "marker" for j in ev), what="the marker")
    reader.close()
    assert [j.job_id for j in got] == ["marker"]
