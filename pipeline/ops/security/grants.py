"""Each role's principal and permissions, as data: pure, derived from topics.yaml.

Roles and what each may do (the README's "Security" section says why):

- `guest-<vm_id>` (runs inside a tenant's VM): read its own queue topic with its own consumer
  group, and `job-control` (cancels and revokes); write job status (`job-status`) and dead
  letters. Nothing else: it cannot see another VM's queue, submit jobs or touch the fleet.
- `dom0-<host_id>` (every host): write telemetry (`io-samples`) and registrations (`hosts`,
  `vms`), read `vms` (to tell a migration from a stop), create and describe queue topics, write
  dead letters.
- `submitter-<name>` (anywhere): write `jobs` and `job-control` (cancels), read `job-status`
  (to follow its jobs).
- `worker-<app id>` (the pipeline): read and write every declared topic and every queue topic,
  its consumer groups `<app id>` (Faust's) and `<app id>-dispatch` (the dispatcher's), its own
  topics `<app id>-*` (changelogs, Faust's leader topic).

Topics a role names but topics.yaml does not declare (yet) are left out, so provisioning never
grants on a name no component uses; declare the topic and provision again.

What Kafka's ACLs cannot say, and vmlb's own cross-checks must (see `KAFKA_CANNOT_ENFORCE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pipeline.errors import ConfigError
from pipeline.topics import Topics

#: The consumer group of a VM's guest worker (producers/guest/worker.py uses the same form).
GUEST_GROUP = "vmlb-guest-{vm_id}"

# SCRAM user names may hold any character, but ',' and '=' need escaping in the SCRAM exchange
# and ':' would confuse "User:<name>" principals: keep to the identifiers vmlb's events allow.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class Role(StrEnum):
    WORKER = "worker"
    DOM0 = "dom0"
    GUEST = "guest"
    SUBMITTER = "submitter"


class Operation(StrEnum):
    """Kafka ACL operations (the names kafka-python's ACLOperation uses)."""

    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DESCRIBE = "DESCRIBE"
    DESCRIBE_CONFIGS = "DESCRIBE_CONFIGS"


class Resource(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"


class Pattern(StrEnum):
    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


@dataclass(frozen=True, order=True)
class Principal:
    """One SCRAM user of one role; `id` is the VM, host, submitter name or worker app id."""

    role: Role
    id: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.id):
            raise ConfigError(
                f"{self.role} id {self.id!r}: letters, digits, '.', '_' and '-' only "
                "(it becomes the SCRAM user name)"
            )

    @property
    def username(self) -> str:
        return f"{self.role}-{self.id}"

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.username}"


@dataclass(frozen=True, order=True)
class Grant:
    """Allow `operation` on one resource (a name, or every name starting with it)."""

    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation


#: Per-role topics by logical name (resolved against topics.yaml and the topic prefix).
GUEST_WRITES = ("job-status", "dead-letters")
GUEST_READS = ("job-control",)
DOM0_WRITES = ("io-samples", "hosts", "vms", "dead-letters")
DOM0_READS = ("vms",)
SUBMITTER_WRITES = ("jobs", "job-control")
SUBMITTER_READS = ("job-status",)

#: What the broker cannot enforce with these ACLs, and which vmlb check has to instead.
KAFKA_CANNOT_ENFORCE = (
    "keys and payload ids: an ACL covers a whole topic, so a Dom0 may write io-samples, hosts "
    "and vms records for any host or VM id, and a guest job status for any job; the pipeline "
    "checks keys against payload ids and payloads against what it knows (a sample only for a "
    "VM registered on that host; a guest's report only for a job dispatched to that VM, for "
    "that attempt, not ended: the dispatcher forwards only those to completions)",
    "who sent a record: consumers never see the producing principal, so a record cannot be "
    "tied to its writer after the fact; a Dom0 can register a host id that is not its own",
    "queue topic creation per host: a Dom0 may create any VM's queue topic (a prefixed ACL), "
    "with any partition count and configs; the dispatcher must accept only queue topics of the "
    "template's form that exist",
    "volume: ACLs do not limit rates or sizes; use Kafka client quotas per user for that, and "
    "the pipeline's size and depth limits for what gets through",
    "dead letters: every role may write them, so their contents are as untrusted as any input",
)


def queue_prefix(topics: Topics) -> str:
    """The fixed part of every queue topic's name (`<prefix>queue.`): a prefixed ACL's name."""
    static = topics.queue_template.name.split("{vm_id}", 1)[0]
    if not static:
        raise ConfigError(
            "queue_template.name: must start with a fixed part (like 'queue.') so that queue "
            "topics can be granted by prefix without granting every topic"
        )
    return topics.prefix + static


def grants_for(principal: Principal, topics: Topics) -> list[Grant]:
    """Every ACL `principal` needs, and no other, under `topics`' prefix."""
    if principal.role is Role.GUEST:
        grants = _topic(topics.queue_topic(principal.id).name, Pattern.LITERAL, _READS)
        grants += [_group(GUEST_GROUP.format(vm_id=principal.id), op) for op in _GROUP_OPS]
        grants += _declared(topics, GUEST_WRITES, _WRITES) + _declared(topics, GUEST_READS, _READS)
    elif principal.role is Role.DOM0:
        grants = _declared(topics, DOM0_WRITES, _WRITES) + _declared(topics, DOM0_READS, _READS)
        grants += _topic(queue_prefix(topics), Pattern.PREFIXED, _CREATES)
    elif principal.role is Role.SUBMITTER:
        grants = _declared(topics, SUBMITTER_WRITES, _WRITES)
        grants += _declared(topics, SUBMITTER_READS, _READS)
    else:
        app_id = principal.id
        everything = (*_READS, *_WRITES, *_CREATES)
        grants = _declared(topics, tuple(topics.specs), everything)
        grants += _topic(queue_prefix(topics), Pattern.PREFIXED, everything)
        # Faust's own topics: table changelogs and `<app id>-__assignor-__leader`.
        grants += _topic(f"{app_id}-", Pattern.PREFIXED, everything)
        grants += [
            _group(group, op) for group in (app_id, f"{app_id}-dispatch") for op in _GROUP_OPS
        ]
    return sorted(set(grants))


_READS = (Operation.READ, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS)
_WRITES = (Operation.WRITE, Operation.DESCRIBE)
_CREATES = (Operation.CREATE, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS)
_GROUP_OPS = (Operation.READ, Operation.DESCRIBE)


def _topic(name: str, pattern: Pattern, operations: tuple[Operation, ...]) -> list[Grant]:
    return [Grant(Resource.TOPIC, name, pattern, op) for op in operations]


def _group(name: str, operation: Operation) -> Grant:
    return Grant(Resource.GROUP, name, Pattern.LITERAL, operation)


def _declared(
    topics: Topics, logical: tuple[str, ...], operations: tuple[Operation, ...]
) -> list[Grant]:
    return [
        grant
        for name in logical
        if name in topics.specs
        for grant in _topic(topics.name(name), Pattern.LITERAL, operations)
    ]
