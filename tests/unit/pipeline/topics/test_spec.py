from pathlib import Path

import pytest
import yaml

from pipeline.errors import TopicsFileError
from pipeline.topics import DEFAULT_TOPICS_FILE, REQUIRED_TOPICS, load_topics


def test_the_repository_topics_file_declares_every_topic():
    topics = load_topics(prefix="vmlb.")
    assert set(REQUIRED_TOPICS) <= set(topics.specs)
    assert topics.name("jobs") == "vmlb.jobs"
    assert topics.specs["vms"].compacted and topics.specs["hosts"].compacted
    assert not topics.specs["jobs"].compacted
    queue = topics.queue_topic("web-1")
    assert queue.name == "vmlb.queue.web-1"
    assert queue.partitions == 1


def test_co_partitioned_topics_have_equal_partition_counts():
    specs = load_topics().specs
    by_vm = {specs[name].partitions for name in ("io-samples", "completions", "vm-state")}
    by_job = {specs[name].partitions for name in ("jobs", "job-status", "decisions")}
    assert len(by_vm) == 1
    assert by_job == {12}


def test_job_partitioned_topics_that_differ_are_refused_naming_them(tmp_path):
    data = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    data["topics"]["job-status"]["partitions"] = 3
    with pytest.raises(TopicsFileError, match=r"must have the same partition count.*job-status=3"):
        load_topics(_write(tmp_path, data))


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_unknown_key_is_named(tmp_path):
    data = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    data["topics"]["jobs"]["partitons"] = 3
    with pytest.raises(TopicsFileError, match=r"topics\.jobs\.partitons"):
        load_topics(_write(tmp_path, data))


def test_invalid_yaml_is_reported(tmp_path):
    with pytest.raises(TopicsFileError, match="invalid YAML"):
        load_topics(_write(tmp_path, "topics: [unclosed"))


def test_missing_required_topic_is_named(tmp_path):
    data = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    del data["topics"]["dead-letters"]
    with pytest.raises(TopicsFileError, match="dead-letters"):
        load_topics(_write(tmp_path, data))


def test_queue_template_must_contain_vm_id(tmp_path):
    data = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    data["queue_template"]["name"] = "queue"
    with pytest.raises(TopicsFileError, match=r"queue_template\.name"):
        load_topics(_write(tmp_path, data))


def test_unknown_topic_name_fails_loudly():
    with pytest.raises(KeyError, match="not declared"):
        load_topics().name("jobz")
