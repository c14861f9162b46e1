"""Each role's ACLs, derived from topics.yaml: what each may touch, and what it may not."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.ops.security.grants import (
    Grant,
    Operation,
    Pattern,
    Principal,
    Resource,
    Role,
    grants_for,
    queue_prefix,
)
from pipeline.topics import Topics, TopicSpec, load_topics

TOPICS = load_topics(prefix="p.")


def _resources(principal: Principal, topics: Topics = TOPICS) -> dict[tuple[str, str], set[str]]:
    """(resource name, pattern) -> operations."""
    found: dict[tuple[str, str], set[str]] = {}
    for grant in grants_for(principal, topics):
        found.setdefault((grant.name, grant.pattern.value), set()).add(grant.operation.value)
    return found


def _with_topic(topics: Topics, logical: str) -> Topics:
    spec = TopicSpec(name=logical, partitions=1, replication_factor=1)
    return Topics(
        specs={**topics.specs, logical: spec},
        queue_template=topics.queue_template,
        prefix=topics.prefix,
    )


def test_a_guest_reads_only_its_own_queue_and_group_and_writes_only_its_outputs():
    assert _resources(Principal(Role.GUEST, "vm1")) == {
        ("p.queue.vm1", "LITERAL"): {"READ", "DESCRIBE", "DESCRIBE_CONFIGS"},
        ("vmlb-guest-vm1", "LITERAL"): {"READ", "DESCRIBE"},
        ("p.job-status", "LITERAL"): {"WRITE", "DESCRIBE"},
        ("p.job-control", "LITERAL"): {"READ", "DESCRIBE", "DESCRIBE_CONFIGS"},
        ("p.dead-letters", "LITERAL"): {"WRITE", "DESCRIBE"},
    }
    # Nothing by prefix: a guest's grants never reach another VM's names.
    assert all(
        g.pattern is Pattern.LITERAL for g in grants_for(Principal(Role.GUEST, "vm1"), TOPICS)
    )


def test_a_guest_gets_job_status_once_topics_yaml_declares_it():
    topics = _with_topic(TOPICS, "job-status")
    assert _resources(Principal(Role.GUEST, "vm1"), topics)[("p.job-status", "LITERAL")] == {
        "WRITE",
        "DESCRIBE",
    }


def test_a_dom0_writes_telemetry_and_registrations_and_creates_queues_only():
    resources = _resources(Principal(Role.DOM0, "h1"))
    assert resources == {
        ("p.io-samples", "LITERAL"): {"WRITE", "DESCRIBE"},
        ("p.hosts", "LITERAL"): {"WRITE", "DESCRIBE"},
        ("p.vms", "LITERAL"): {"WRITE", "DESCRIBE", "READ", "DESCRIBE_CONFIGS"},
        ("p.dead-letters", "LITERAL"): {"WRITE", "DESCRIBE"},
        ("p.queue.", "PREFIXED"): {"CREATE", "DESCRIBE", "DESCRIBE_CONFIGS"},
    }
    assert ("p.vm-state", "LITERAL") not in resources


def test_a_submitter_writes_jobs_and_cancels_and_follows_job_status_only():
    assert _resources(Principal(Role.SUBMITTER, "ci")) == {
        ("p.jobs", "LITERAL"): {"WRITE", "DESCRIBE"},
        ("p.job-control", "LITERAL"): {"WRITE", "DESCRIBE"},
        ("p.job-status", "LITERAL"): {"READ", "DESCRIBE", "DESCRIBE_CONFIGS"},
    }


def test_the_worker_covers_every_declared_topic_its_queues_its_group_and_its_own_topics():
    topics = _with_topic(TOPICS, "dispatch-load")  # a topic added later is covered too
    resources = _resources(Principal(Role.WORKER, "app"), topics)
    for logical in topics.specs:
        assert {"READ", "WRITE"} <= resources[(topics.name(logical), "LITERAL")], logical
    assert {"READ", "WRITE"} <= resources[("p.queue.", "PREFIXED")]
    assert {"CREATE", "READ", "WRITE"} <= resources[("app-", "PREFIXED")]
    assert resources[("app", "LITERAL")] == {"READ", "DESCRIBE"}  # its consumer group
    group = Grant(Resource.GROUP, "app", Pattern.LITERAL, Operation.READ)
    assert group in grants_for(Principal(Role.WORKER, "app"), topics)


def test_queue_topics_need_a_fixed_prefix_to_be_granted_by_prefix():
    topics = Topics(
        specs=TOPICS.specs,
        queue_template=TOPICS.queue_template.model_copy(update={"name": "{vm_id}"}),
        prefix="",
    )
    with pytest.raises(ConfigError, match="fixed part"):
        queue_prefix(topics)
    assert queue_prefix(TOPICS) == "p.queue."


@pytest.mark.parametrize("bad", ["", "a:b", "a,b", "a=b", "-lead", "a b"])
def test_a_principal_id_must_be_a_plain_identifier(bad):
    with pytest.raises(ConfigError, match="letters, digits"):
        Principal(Role.GUEST, bad)


def test_principal_names():
    principal = Principal(Role.DOM0, "host-1")
    assert principal.username == "dom0-host-1"
    assert principal.kafka_principal == "User:dom0-host-1"
