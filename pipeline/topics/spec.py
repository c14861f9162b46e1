"""topics.yaml loaded into frozen, validated specs: the one place topic names are resolved.

`load_topics()` reads and validates the file; `Topics.name("jobs")` is the only way code turns a
logical topic name into the deployment's full one (prefix included), and it refuses names the
file does not declare. `topics_of(kafka)` is the same, cached per topic prefix. Pure: no Kafka.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import TopicsFileError
from pipeline.settings import KafkaSettings

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
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
    "job-status",
    "job-control",
    "host-admin",
    "dispatch-load",
    "dead-letters",
)

#: Topics that must have as many partitions as `jobs`: partition p of each belongs to the
#: dispatcher that owns jobs partition p.
JOB_PARTITIONED = ("jobs", "job-status", "decisions")


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
    #: `defaults.replication_factor`: the replicas of the topics topics.yaml does not list (the
    #: worker's changelogs, Faust's leader topic) unless VMLB_REPLICATION_FACTOR says otherwise.
    replication_factor: int = 1

    def name(self, logical: str) -> str:
        """The full topic name of a declared topic, e.g. `jobs` -> `vmlb.jobs`."""
        if logical not in self.specs:
            raise KeyError(f"topic {logical!r} is not declared in topics.yaml")
        return self.prefix + logical

    def partitions(self, logical: str) -> int:
        """The declared partition count of a topic."""
        self.name(logical)
        return self.specs[logical].partitions

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
    counts = {name: specs[name].partitions for name in JOB_PARTITIONED}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name}={count}" for name, count in counts.items())
        raise TopicsFileError(
            f"{path}: topics: {', '.join(JOB_PARTITIONED)} must have the same partition count "
            f"(partition p of each belongs to one dispatcher): {listed}"
        )
    template = _resolve(parsed.queue_template.name, parsed.queue_template, defaults)
    return Topics(
        specs=specs,
        queue_template=template,
        prefix=prefix,
        replication_factor=defaults.replication_factor,
    )


def _resolve(name: str, entry: _TopicEntry, defaults: _Defaults) -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=entry.partitions or defaults.partitions,
        replication_factor=entry.replication_factor or defaults.replication_factor,
        config={k: str(v) for k, v in entry.config.items()},
    )


@functools.cache
def _declared(prefix: str) -> Topics:
    return load_topics(prefix=prefix)


def topics_of(kafka: KafkaSettings) -> Topics:
    """The declared topics under `kafka`'s topic prefix (topics.yaml read once per prefix)."""
    return _declared(kafka.topic_prefix)
