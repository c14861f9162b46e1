"""On the secured broker: each principal may do what its role needs, and the broker refuses the
rest (the client gets the authorization error; the broker's authorizer logs the denial)."""

from __future__ import annotations

import stat
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from pipeline.events import JobSubmission
from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.security.grants import Role
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, ensure_topic
from pipeline.topics.reader import read_all
from producers.submit import Submitter
from tests.integration.security.conftest import Principals, wait_for, wait_for_broker_log

#: Fail fast where the broker drops a client: kafka-python otherwise retries for 30 s.
FAST = {"bootstrap_timeout_ms": 5000, "request_timeout_ms": 10000}


def _produce(
    settings: KafkaSettings, topic: str, value: bytes = b"{}", partition: int | None = None
) -> None:
    producer = KafkaProducer(acks="all", max_block_ms=10000, **settings.to_kafka_python())
    try:
        # Keyed: some topics are compacted.
        producer.send(topic, value, key=b"key", partition=partition).get(timeout=15)
    finally:
        producer.close(timeout=5)


def _read_one(settings: KafkaSettings, topic: str, group: str | None) -> bytes:
    """The first record of `topic` (partition 0), read with consumer group `group` if any."""
    consumer = KafkaConsumer(
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.to_kafka_python(),
    )
    try:
        consumer.assign([TopicPartition(topic, 0)])

        def poll() -> bytes | None:
            for records in consumer.poll(timeout_ms=500).values():
                return records[0].value  # type: ignore[no-any-return]
            return None

        value: bytes = wait_for(poll, 30, what=f"a record on {topic}")
        if group is not None:
            consumer.commit()  # the group's offsets: also authorized per group
        return value
    finally:
        consumer.close(autocommit=False)


def test_a_client_without_credentials_is_refused(
    secure_cluster: LocalCluster, secure_topics: Topics
) -> None:
    anonymous = KafkaSettings(broker=secure_cluster.bootstrap, security_protocol="PLAINTEXT")
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaAdminClient(**FAST, **anonymous.to_kafka_python())
    # The broker drops it before any request is served: nothing but the SASL handshake is heard.
    wait_for_broker_log(secure_cluster, "during SASL handshake")


def test_the_controller_port_admits_no_client_principal(
    secure_cluster: LocalCluster, principals: Principals
) -> None:
    # An open controller listener would let clients reach the quorum's admin APIs (KIP-919).
    controller = f"127.0.0.1:{secure_cluster.nodes[0].controller_port}"
    guest = principals.provision(Role.GUEST, principals.id("vm"))
    attempts = {
        "Unsupported SASL mechanism SCRAM-SHA-512": guest,  # the quorum speaks only PLAIN
        "Invalid username or password": guest.model_copy(update={"sasl_mechanism": "PLAIN"}),
    }
    for reason, settings in attempts.items():
        with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
            KafkaAdminClient(
                **FAST, **settings.model_copy(update={"broker": controller}).to_kafka_python()
            )
        wait_for_broker_log(
            secure_cluster, "listenerType=CONTROLLER", "Failed authentication", reason
        )


def test_a_wrong_password_is_refused(secure_cluster: LocalCluster, admin: KafkaSettings) -> None:
    impostor = admin.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaAdminClient(**FAST, **impostor.to_kafka_python())
    wait_for_broker_log(secure_cluster, "Failed authentication", "invalid credentials")


def test_a_guest_reads_its_own_queue_and_is_refused_another_vms(
    secure_cluster: LocalCluster, admin: KafkaSettings, principals: Principals
) -> None:
    mine, theirs = principals.id("vm-a"), principals.id("vm-b")
    for vm_id in (mine, theirs):
        ensure_topic(admin, principals.topics.queue_topic(vm_id))
        _produce(admin, principals.topics.queue_topic(vm_id).name, f'"{vm_id}"'.encode())
    guest = principals.provision(Role.GUEST, mine)

    own_queue = principals.topics.queue_topic(mine).name
    assert _read_one(guest, own_queue, f"vmlb-guest-{mine}") == f'"{mine}"'.encode()

    other_queue = principals.topics.queue_topic(theirs).name
    with pytest.raises(TopicAuthorizationFailedError):
        _read_one(guest, other_queue, f"vmlb-guest-{mine}")
    wait_for_broker_log(secure_cluster, f"User:guest-{mine}", "Denied", other_queue)
    # Nor through the other VM's consumer group.
    with pytest.raises(GroupAuthorizationFailedError):
        _read_one(guest, own_queue, f"vmlb-guest-{theirs}")


def test_a_guest_writes_job_status_but_cannot_submit_jobs_or_forge_completions(
    secure_cluster: LocalCluster, principals: Principals
) -> None:
    vm_id = principals.id("vm")
    guest = principals.provision(Role.GUEST, vm_id)
    _produce(guest, principals.topics.name("job-status"))
    _produce(guest, principals.topics.name("dead-letters"))
    # Only the dispatcher writes completions (the runs it checked): the stats agent trusts them.
    for logical in ("jobs", "completions"):
        with pytest.raises(TopicAuthorizationFailedError):
            _produce(guest, principals.topics.name(logical))
        wait_for_broker_log(
            secure_cluster, f"User:guest-{vm_id}", "Denied", principals.topics.name(logical)
        )


def test_a_dom0_writes_telemetry_and_registrations_but_not_vm_state(
    secure_cluster: LocalCluster, admin: KafkaSettings, principals: Principals
) -> None:
    host_id = principals.id("host")
    dom0 = principals.provision(Role.DOM0, host_id)
    for logical in ("io-samples", "hosts", "vms"):
        _produce(dom0, principals.topics.name(logical))
    # It creates the queue topics of its VMs (the prefixed grant).
    assert ensure_topic(dom0, principals.topics.queue_topic(principals.id("new-vm")))
    with pytest.raises(TopicAuthorizationFailedError):
        _produce(dom0, principals.topics.name("vm-state"))
    wait_for_broker_log(
        secure_cluster, f"User:dom0-{host_id}", "Denied", principals.topics.name("vm-state")
    )


def test_a_submitter_submits_and_follows_job_status_but_reads_no_submissions(
    secure_cluster: LocalCluster, admin: KafkaSettings, principals: Principals
) -> None:
    submitter = principals.provision(Role.SUBMITTER, principals.id("ci"))
    with Submitter(submitter) as client:
        job_id = client.submit("io-heavy", {"io_ops": 1})
    jobs = wait_for(
        lambda: [
            JobSubmission.from_bytes(r.value)
            for r in read_all(admin, principals.topics.name("jobs"), timeout_s=5)
        ],
        what="the submitted job on the jobs topic",
    )
    assert [job.job_id for job in jobs] == [job_id]
    status_topic = principals.topics.name("job-status")
    _produce(admin, status_topic, b'{"job_id": "key"}', partition=0)
    assert _read_one(submitter, status_topic, None) == b'{"job_id": "key"}'
    with pytest.raises(TopicAuthorizationFailedError):
        _read_one(submitter, principals.topics.name("jobs"), None)


def test_provisioning_twice_keeps_the_password_and_the_acls(
    admin: KafkaSettings, principals: Principals
) -> None:
    from pipeline.ops.security.grants import Principal, grants_for
    from pipeline.ops.security.provision import acls_of, provision

    vm_id = principals.id("vm")
    first = principals.provision(Role.GUEST, vm_id)
    again = provision(
        admin, principals.topics, [Principal(Role.GUEST, vm_id)], principals.credentials_dir
    )
    assert not again[0].new_password and again[0].revoked == 0
    assert principals.settings_of(Role.GUEST, vm_id).sasl_password == first.sasl_password
    file_mode = principals.file_of(Role.GUEST, vm_id).stat().st_mode
    assert stat.S_IMODE(file_mode) == 0o600
    held = [grant for _, grant in acls_of(admin, f"guest-{vm_id}")]
    assert sorted(held) == grants_for(Principal(Role.GUEST, vm_id), principals.topics)
    # Still works with the kept password.
    _produce(first, principals.topics.name("job-status"))


def test_a_revoked_principal_is_refused(
    secure_cluster: LocalCluster, admin: KafkaSettings, principals: Principals
) -> None:
    from pipeline.ops.security.grants import Principal, grants_for
    from pipeline.ops.security.provision import revoke

    name = principals.id(f"gone-{uuid.uuid4().hex[:4]}")
    submitter = principals.provision(Role.SUBMITTER, name)
    _produce(submitter, principals.topics.name("jobs"))
    held = grants_for(Principal(Role.SUBMITTER, name), principals.topics)
    assert revoke(admin, [Principal(Role.SUBMITTER, name)])[f"submitter-{name}"] == len(held)
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaAdminClient(**FAST, **submitter.to_kafka_python())
