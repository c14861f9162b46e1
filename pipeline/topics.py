"""topics.yaml loaded into frozen, validated specs, and applied to a cluster idempotently.

`load_topics()` reads the file once; `TopicPlan.apply()` creates what is missing through
kafka-python's admin client and reports drift (partition count, configs) without touching
existing topics: changing a live topic's partitioning is an operator's decision, not a side effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import TopicsFileError
from pipeline.settings import KafkaSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOPICS_FILE = REPO_ROOT / "topics.yaml"

#: The logical topics every deployment must declare; code refers to topics by these names.
REQUIRED_TOPICS = (
    "io-samples",
    "jobs",
    "completions",
    "decisions",
    "hosts",
    "vms",
    "vm-state",
    "limits",
    "dispatch-ticks",
    "dead-letters",
)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSpec(_Strict):
    """One topic as declared: its logical name and how it must look on the cluster."""

    name: str
    partitions: int = Field(ge=1, le=10_000)
    replication_factor: int = Field(ge=1, le=32)
    config: dict[str, str] = Field(default_factory=dict)

    @field_validator("config", mode="before")
    @classmethod
    def _configs_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")


class _TopicEntry(_Strict):
    partitions: int | None = Field(None, ge=1, le=10_000)
    replication_factor: int | None = Field(None, ge=1, le=32)
    config: dict[str, str | int | float] = Field(default_factory=dict)


class _Defaults(_Strict):
    partitions: int = Field(1, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=32)


class _QueueTemplate(_Entry := _TopicEntry):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]*\{vm_id\}[A-Za-z0-9._-]*$")


class _TopicsFile(_Strict):
    defaults: _Defaults = Field(default_factory=_Defaults)
    topics: dict[str, _TopicEntry]
    queue_template: _QueueTemplate


@dataclass(frozen=True)
class Topics:
    """Every declared topic, resolved against defaults and the deployment's topic prefix."""

    specs: dict[str, TopicSpec]
    queue_template: TopicSpec
    prefix: str = ""

    def name(self, logical: str) -> str:
        """The full topic name of a declared topic, e.g. `jobs` -> `vmlb.jobs`."""
        if logical not in self.specs:
            raise KeyError(f"topic {logical!r} is not declared in topics.yaml")
        return self.prefix + logical

    def queue_topic(self, vm_id: str) -> TopicSpec:
        """The queue topic spec of one VM, from the template."""
        name = self.prefix + self.queue_template.name.format(vm_id=vm_id)
        return self.queue_template.model_copy(update={"name": name})

    def all_specs(self) -> list[TopicSpec]:
        """The declared topics with full names (queue topics are created per VM, not here)."""
        return [
            spec.model_copy(update={"name": self.prefix + spec.name})
            for spec in self.specs.values()
        ]


def load_topics(path: Path | str = DEFAULT_TOPICS_FILE, prefix: str = "") -> Topics:
    """Read and validate topics.yaml; any problem raises TopicsFileError naming the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise TopicsFileError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise TopicsFileError(f"{path}: invalid YAML: {exc}") from None
    try:
        parsed = _TopicsFile.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise TopicsFileError(f"{path}: " + "; ".join(problems)) from None
    missing = [name for name in REQUIRED_TOPICS if name not in parsed.topics]
    if missing:
        raise TopicsFileError(
            f"{path}: topics: required topic(s) not declared: {', '.join(missing)}"
        )
    defaults = parsed.defaults
    specs = {name: _resolve(name, entry, defaults) for name, entry in parsed.topics.items()}
    template = _resolve(parsed.queue_template.name, parsed.queue_template, defaults)
    return Topics(specs=specs, queue_template=template, prefix=prefix)


def _resolve(name: str, entry: _TopicEntry, defaults: _Defaults) -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=entry.partitions or defaults.partitions,
        replication_factor=entry.replication_factor or defaults.replication_factor,
        config={k: str(v) for k, v in entry.config.items()},
    )


# --- Applying to a cluster ----------------------------------------------------------------------


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
        present = [spec for spec in specs if spec.name in existing]
        if present:
            described = {t["name"]: t for t in admin.describe_topics([s.name for s in present])}
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


def ensure_topic(settings: KafkaSettings, spec: TopicSpec, timeout_s: float = 30.0) -> bool:
    """Create one topic if it does not exist (used for per-VM queues). True if it was created."""
    reports = apply_topics(settings, [spec], timeout_s=timeout_s)
    return any(r.action is Action.CREATED for r in reports)


#: The worker's tables; Faust names their changelogs `<app id>-<table>-changelog`.
TABLES = ("vm_stats", "waiting_jobs", "dispatched")


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
