"""Topic specs applied to a cluster, idempotently, through kafka-python's admin client.

`apply_topics()` creates what is missing and reports drift (partition count, replicas, configs)
without touching existing topics: changing a live topic's partitioning is an operator's decision,
not a side effect. `ensure_topic()` does it for one topic (a VM's queue).

Replication is decided here, for every topic vmlb creates (`as_deployed`): VMLB_REPLICATION_FACTOR
over the spec's `replication_factor`, VMLB_MIN_INSYNC_REPLICAS as the topic's
`min.insync.replicas`. More replicas than the cluster has brokers is refused (ReplicationError)
unless the caller allows fewer (`vmlb topics apply --allow-fewer-replicas`): then the topic gets
one replica per broker and `min.insync.replicas` at most that many.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pipeline.errors import BrokerError, ConfigError
from pipeline.settings import KafkaSettings
from pipeline.topics.spec import Topics, TopicSpec

MIN_INSYNC = "min.insync.replicas"


class ReplicationError(ConfigError):
    """Topics would need more replicas than the cluster has brokers."""


class Action(StrEnum):
    CREATED = "created"
    WOULD_CREATE = "would create"
    UNCHANGED = "unchanged"
    DRIFT = "drift"


@dataclass(frozen=True)
class TopicReport:
    name: str
    action: Action
    details: list[str] = field(default_factory=list)


def apply_topics(
    settings: KafkaSettings,
    specs: Iterable[TopicSpec],
    *,
    dry_run: bool = False,
    allow_fewer_replicas: bool = False,
    timeout_s: float = 30.0,
) -> list[TopicReport]:
    """Create the missing topics and compare the existing ones; return one report per topic.

    Each spec is applied as deployed (`as_deployed`: the settings' replication over the spec's).
    Raises ReplicationError, before creating anything, if a topic would need more replicas than
    the cluster has brokers and `allow_fewer_replicas` is not given.
    """
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        client_id="vmlb-topics",
        request_timeout_ms=int(timeout_s * 1000),
        **settings.to_kafka_python(),
    )
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        specs = fitted(
            [as_deployed(spec, settings) for spec in specs], brokers, allow_fewer_replicas
        )
        existing = set(admin.list_topics())
        reports: list[TopicReport] = []
        to_create = []
        for spec in specs:
            if spec.name in existing:
                continue
            if dry_run:
                reports.append(TopicReport(spec.name, Action.WOULD_CREATE, _describe_spec(spec)))
            else:
                to_create.append(spec)
        for spec in to_create:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            spec.partitions,
                            spec.replication_factor,
                            topic_configs=spec.config,
                        )
                    ],
                    timeout_ms=int(timeout_s * 1000),
                )
                reports.append(TopicReport(spec.name, Action.CREATED, _describe_spec(spec)))
            except TopicAlreadyExistsError:  # created concurrently by another process
                existing.add(spec.name)
        created = {r.name: r for r in reports if r.action is Action.CREATED}
        # A topic counts as created once the cluster lists it with a leader for every partition:
        # a client that looks right after (kcat -L, a consumer) would otherwise not find it yet.
        _wait_until_listed(admin, [s for s in specs if s.name in created], timeout_s)
        present = [spec for spec in specs if spec.name in existing]
        deadline = time.monotonic() + timeout_s
        if present:
            described = _described(admin, [s.name for s in present], deadline)
            config_replies = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present]
            )
            actual_configs = _configs_by_topic(config_replies)
            for spec in present:
                drift = []
                found = described.get(spec.name, {}).get("partitions", [])
                if len(found) != spec.partitions:
                    drift.append(f"partitions: declared {spec.partitions}, actual {len(found)}")
                replicas = min((len(p.get("replica_nodes", [])) for p in found), default=0)
                if found and replicas != spec.replication_factor:
                    drift.append(
                        f"replication_factor: declared {spec.replication_factor}, actual {replicas}"
                    )
                actual = actual_configs.get(spec.name, {})
                for key, want in spec.config.items():
                    have = actual.get(key)
                    if have != want:
                        drift.append(f"{key}: declared {want}, actual {have}")
                action = Action.DRIFT if drift else Action.UNCHANGED
                reports.append(TopicReport(spec.name, action, drift))
        return sorted(reports, key=lambda r: r.name)
    finally:
        admin.close()


def _described(admin: Any, names: list[str], deadline: float) -> dict[str, Any]:
    """describe_topics, again until every topic has its partitions (metadata propagates)."""
    while True:
        described = {t["name"]: t for t in admin.describe_topics(names)}
        if all(described.get(n, {}).get("partitions") for n in names):
            return described
        if time.monotonic() >= deadline:
            return described
        time.sleep(0.1)


def ensure_topic(settings: KafkaSettings, spec: TopicSpec, timeout_s: float = 30.0) -> bool:
    """Create one topic if it does not exist (used for per-VM queues). True if it was created."""
    reports = apply_topics(settings, [spec], timeout_s=timeout_s)
    return any(r.action is Action.CREATED for r in reports)


def replication_factor(settings: KafkaSettings, topics: Topics) -> int:
    """The replicas of a topic topics.yaml does not list (changelogs, Faust's own topics)."""
    return settings.replication_factor or topics.replication_factor


def as_deployed(spec: TopicSpec, settings: KafkaSettings) -> TopicSpec:
    """`spec` with this deployment's replication: VMLB_REPLICATION_FACTOR over the declared
    replicas, VMLB_MIN_INSYNC_REPLICAS as its `min.insync.replicas`."""
    update: dict[str, Any] = {}
    if settings.replication_factor is not None:
        update["replication_factor"] = settings.replication_factor
    if settings.min_insync_replicas is not None:
        update["config"] = {**spec.config, MIN_INSYNC: str(settings.min_insync_replicas)}
    return spec.model_copy(update=update) if update else spec


def fitted(specs: list[TopicSpec], brokers: int, allow_fewer_replicas: bool) -> list[TopicSpec]:
    """`specs` checked against a cluster of `brokers` brokers.

    A topic with more replicas than brokers cannot be created (Kafka answers
    INVALID_REPLICATION_FACTOR, one topic at a time). Refused here for all of them at once,
    naming each, or, when the caller allows fewer replicas, reduced to one per broker, with
    `min.insync.replicas` lowered to match (more than the replicas would refuse every write).
    """
    too_many = [spec for spec in specs if spec.replication_factor > brokers]
    if not too_many:
        return specs
    if not allow_fewer_replicas:
        listed = ", ".join(f"{spec.name} ({spec.replication_factor})" for spec in too_many)
        raise ReplicationError(
            f"the cluster has {brokers} broker(s), fewer than the replicas of: {listed}; "
            "lower replication_factor in topics.yaml or VMLB_REPLICATION_FACTOR, add brokers, "
            "or give `vmlb topics apply --allow-fewer-replicas` to create them with "
            f"{brokers} replica(s)"
        )
    reduced = []
    for spec in specs:
        if spec.replication_factor > brokers:
            config = dict(spec.config)
            if MIN_INSYNC in config:
                config[MIN_INSYNC] = str(min(int(config[MIN_INSYNC]), brokers))
            spec = spec.model_copy(update={"replication_factor": brokers, "config": config})
        reduced.append(spec)
    return reduced


#: The worker's tables; Faust names their changelogs `<app id>-<table>-changelog`.
TABLES = ("vm_stats",)


def changelog_specs(app_id: str, partitions: int, replication_factor: int = 1) -> list[TopicSpec]:
    """The changelog topics of the worker's tables, as Faust would create them (compacted)."""
    return [
        TopicSpec(
            name=f"{app_id}-{table}-changelog",
            partitions=partitions,
            replication_factor=replication_factor,
            config={"cleanup.policy": "compact"},
        )
        for table in TABLES
    ]


def leader_topic_spec(app_id: str, replication_factor: int = 1) -> TopicSpec:
    """Faust's assignor leader topic (faust/assignor/leader_assignor.py: one partition, named
    `<app id>-__assignor-__leader`, replicas from the app's `topic_replication_factor`)."""
    return TopicSpec(
        name=f"{app_id}-__assignor-__leader", partitions=1, replication_factor=replication_factor
    )


def worker_topic_specs(app_id: str, settings: KafkaSettings, topics: Topics) -> list[TopicSpec]:
    """Every topic a worker's Faust app declares itself: its tables' changelogs (partitioned like
    io-samples) and the leader topic, at this deployment's replication. `vmlb worker` creates
    them before Faust starts, so that they get `min.insync.replicas` too (Faust's leader topic
    has no config of its own) and a too-small cluster is refused in one clear line."""
    replicas = replication_factor(settings, topics)
    return [
        *changelog_specs(app_id, topics.partitions("io-samples"), replicas),
        leader_topic_spec(app_id, replicas),
    ]


def _wait_until_listed(admin: Any, specs: list[TopicSpec], timeout_s: float) -> None:
    """Until the broker's metadata lists every created topic with a leader for each partition.

    CreateTopics answers once the controller has recorded a topic; the brokers learn of it from
    the metadata log a little later (seconds on a loaded machine). Until then a client's
    metadata request (kcat -L, a producer's first send) does not see the topic, so "applied"
    means: listed with leaders.
    """
    if not specs:
        return
    wanted = {spec.name: spec.partitions for spec in specs}
    deadline = time.monotonic() + timeout_s
    while True:
        listed = {t["name"]: t for t in admin.describe_topics(list(wanted))}
        missing = [
            name
            for name, partitions in wanted.items()
            if not _has_leaders(listed.get(name), partitions)
        ]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"created but not listed with leaders after {timeout_s:.0f}s: {', '.join(missing)}"
            )
        time.sleep(0.1)


def _has_leaders(topic: dict[str, Any] | None, partitions: int) -> bool:
    if topic is None or topic.get("error_code", 0) != 0:
        return False
    found = topic.get("partitions", [])
    return len(found) == partitions and all(p.get("leader_id", -1) >= 0 for p in found)


def _describe_spec(spec: TopicSpec) -> list[str]:
    configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
    return [f"partitions={spec.partitions} replicas={spec.replication_factor} {configs}".strip()]


def _configs_by_topic(reply: Any) -> dict[str, dict[str, str]]:
    """kafka-python 3.x's DescribeConfigs answer as {topic: {key: value}}."""
    topics = reply.get("topic", {}) if isinstance(reply, dict) else {}
    return {
        topic: {key: str(entry.get("value")) for key, entry in entries.items()}
        for topic, entries in topics.items()
    }
