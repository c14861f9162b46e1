"""Topic specs applied to a cluster, idempotently, through kafka-python's admin client.

`apply_topics()` creates what is missing and reports drift (partition count, configs) without
touching existing topics: changing a live topic's partitioning is an operator's decision, not a
side effect. `ensure_topic()` does it for one topic (a VM's queue).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pipeline.errors import BrokerError
from pipeline.settings import KafkaSettings
from pipeline.topics.spec import TopicSpec


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
    allow_fewer_replicas: bool = True,
    timeout_s: float = 30.0,
) -> list[TopicReport]:
    """Create the missing topics and compare the existing ones; return one report per topic."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = list(specs)
    admin = KafkaAdminClient(
        client_id="vmlb-topics",
        request_timeout_ms=int(timeout_s * 1000),
        **settings.to_kafka_python(),
    )
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        existing = set(admin.list_topics())
        reports: list[TopicReport] = []
        to_create = []
        for spec in specs:
            replicas = (
                min(spec.replication_factor, brokers)
                if allow_fewer_replicas
                else spec.replication_factor
            )
            if spec.name in existing:
                continue
            if dry_run:
                reports.append(
                    TopicReport(spec.name, Action.WOULD_CREATE, _describe_spec(spec, replicas))
                )
            else:
                to_create.append((spec, replicas))
        for spec, replicas in to_create:
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replicas, topic_configs=spec.config)],
                    timeout_ms=int(timeout_s * 1000),
                )
                reports.append(
                    TopicReport(spec.name, Action.CREATED, _describe_spec(spec, replicas))
                )
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
                partitions = len(described.get(spec.name, {}).get("partitions", []))
                if partitions != spec.partitions:
                    drift.append(f"partitions: declared {spec.partitions}, actual {partitions}")
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


#: The worker's tables; Faust names their changelogs `<app id>-<table>-changelog`.
TABLES = ("vm_stats",)


def changelog_specs(app_id: str, partitions: int) -> list[TopicSpec]:
    """The changelog topics of the worker's tables, as Faust would create them (compacted)."""
    return [
        TopicSpec(
            name=f"{app_id}-{table}-changelog",
            partitions=partitions,
            replication_factor=1,
            config={"cleanup.policy": "compact"},
        )
        for table in TABLES
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


def _describe_spec(spec: TopicSpec, replicas: int) -> list[str]:
    configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
    return [f"partitions={spec.partitions} replicas={replicas} {configs}".strip()]


def _configs_by_topic(reply: Any) -> dict[str, dict[str, str]]:
    """kafka-python 3.x's DescribeConfigs answer as {topic: {key: value}}."""
    topics = reply.get("topic", {}) if isinstance(reply, dict) else {}
    return {
        topic: {key: str(entry.get("value")) for key, entry in entries.items()}
        for topic, entries in topics.items()
    }
