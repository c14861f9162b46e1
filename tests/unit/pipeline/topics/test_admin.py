"""`vmlb worker` creates the tables' changelogs itself; their names must be Faust's own. Every
topic vmlb creates gets the deployment's replication, or is refused on too small a cluster."""

import pytest
import yaml

from pipeline.settings import KafkaSettings, PipelineSettings
from pipeline.topics import (
    DEFAULT_TOPICS_FILE,
    TABLES,
    ReplicationError,
    TopicSpec,
    as_deployed,
    changelog_specs,
    load_topics,
    replication_factor,
    worker_topic_specs,
)
from pipeline.topics.admin import fitted
from pipeline.worker.app import create_app


def test_changelog_specs_name_and_size_every_table_as_faust_does(tmp_path):
    pipeline = create_app(
        KafkaSettings(topic_prefix="t."),
        PipelineSettings(app_id="cl-test", store="memory://", data_dir=str(tmp_path)),
    )
    faust_names = {
        name: table.changelog_topic.get_topic_name() for name, table in pipeline.app.tables.items()
    }
    assert set(faust_names) == set(TABLES)
    specs = {spec.name: spec for spec in changelog_specs("cl-test", partitions=6)}
    assert set(specs) == set(faust_names.values())
    for name, table in pipeline.app.tables.items():
        spec = specs[faust_names[name]]
        assert spec.partitions == table.partitions
        assert spec.config["cleanup.policy"] == "compact"


def test_worker_topic_specs_are_faust_own_topics_at_the_deployments_replication(tmp_path):
    kafka = KafkaSettings(topic_prefix="t.", replication_factor=3, min_insync_replicas=2)
    pipeline = create_app(
        kafka, PipelineSettings(app_id="cl-test", store="memory://", data_dir=str(tmp_path))
    )
    leader = pipeline.app._leader_assignor._leader_topic  # what Faust declares
    specs = {spec.name: spec for spec in worker_topic_specs("cl-test", kafka, pipeline.topics)}
    assert leader.get_topic_name() in specs
    assert specs[leader.get_topic_name()].partitions == leader.partitions == 1
    # Faust declares its topics with the app's topic_replication_factor: the same replicas.
    assert pipeline.app.conf.topic_replication_factor == 3
    assert {spec.replication_factor for spec in specs.values()} == {3}


def test_worker_topic_specs_follow_topics_yaml_when_no_replication_is_set(tmp_path):
    data = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    data["defaults"]["replication_factor"] = 2
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(data))
    topics = load_topics(path)
    specs = worker_topic_specs("a", KafkaSettings(replication_factor=None), topics)
    assert {spec.replication_factor for spec in specs} == {2}
    assert replication_factor(KafkaSettings(replication_factor=None), topics) == 2
    assert replication_factor(KafkaSettings(replication_factor=3), topics) == 3


def test_as_deployed_sets_replicas_and_min_insync_from_the_settings():
    spec = TopicSpec(name="x", partitions=2, replication_factor=1, config={"retention.ms": "5"})
    deployed = as_deployed(spec, KafkaSettings(replication_factor=3, min_insync_replicas=2))
    assert deployed.replication_factor == 3
    assert deployed.config == {"retention.ms": "5", "min.insync.replicas": "2"}
    assert as_deployed(spec, KafkaSettings(replication_factor=None)) == spec


def test_more_replicas_than_brokers_is_refused_naming_every_topic():
    specs = [
        TopicSpec(name="a", partitions=1, replication_factor=3),
        TopicSpec(name="b", partitions=1, replication_factor=1),
        TopicSpec(name="c", partitions=1, replication_factor=2),
    ]
    with pytest.raises(ReplicationError, match=r"1 broker.*a \(3\), c \(2\).*allow-fewer"):
        fitted(specs, brokers=1, allow_fewer_replicas=False)
    assert fitted(specs, brokers=3, allow_fewer_replicas=False) == specs


def test_allowing_fewer_replicas_gives_one_per_broker_and_a_reachable_min_insync():
    spec = TopicSpec(
        name="a", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"}
    )
    (reduced,) = fitted([spec], brokers=1, allow_fewer_replicas=True)
    assert reduced.replication_factor == 1
    assert reduced.config["min.insync.replicas"] == "1"
    (two,) = fitted([spec], brokers=2, allow_fewer_replicas=True)
    assert (two.replication_factor, two.config["min.insync.replicas"]) == (2, "2")
