"""The security tier's own broker: the local KRaft broker secured (SASL/SCRAM, StandardAuthorizer,
no access without an ACL), started once per session from the installed jars.

It is never KAFKA_BOOTSTRAP or a container: what is tested is `vmlb broker start --secure`'s own
configuration. Without Java or the jars every test here errors with the reason; none skips.
Each test gets its own topic prefix and provisions principals with ids of its own (SCRAM users
are cluster-wide), through `vmlb acl`'s code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.ops.broker.local import LocalCluster
from pipeline.ops.ports import free_port_run
from pipeline.ops.security.credentials import credentials_path
from pipeline.ops.security.grants import Principal, Role
from pipeline.ops.security.provision import provision
from pipeline.settings import KafkaSettings, load_kafka_settings
from pipeline.topics import Topics, apply_topics, load_topics


@pytest.fixture(scope="session")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        Path(tmp_path_factory.mktemp("kafka-secure")), port=free_port_run(2), secure=True
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def admin(secure_cluster: LocalCluster) -> KafkaSettings:
    """The super user, under a topic prefix of this test's own."""
    return secure_cluster.settings().model_copy(
        update={"topic_prefix": f"s{uuid.uuid4().hex[:10]}."}
    )


@pytest.fixture
def secure_topics(admin: KafkaSettings) -> Topics:
    declared = load_topics(prefix=admin.topic_prefix)
    apply_topics(admin, declared.all_specs())
    return declared


@dataclass
class Principals:
    """Provisions principals for one test and hands out their client settings."""

    admin: KafkaSettings
    topics: Topics
    credentials_dir: Path
    suffix: str

    def id(self, name: str) -> str:
        """`name` made unique to this test (SCRAM users are cluster-wide)."""
        return f"{name}-{self.suffix}"

    def provision(self, role: Role, principal_id: str) -> KafkaSettings:
        provision(self.admin, self.topics, [Principal(role, principal_id)], self.credentials_dir)
        return self.settings_of(role, principal_id)

    def settings_of(self, role: Role, principal_id: str) -> KafkaSettings:
        return load_kafka_settings(credentials_file=self.file_of(role, principal_id))

    def file_of(self, role: Role, principal_id: str) -> Path:
        return credentials_path(self.credentials_dir, Principal(role, principal_id).username)


@pytest.fixture
def principals(admin: KafkaSettings, secure_topics: Topics, tmp_path: Path) -> Principals:
    return Principals(admin, secure_topics, tmp_path / "credentials", uuid.uuid4().hex[:8])


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def broker_log(cluster: LocalCluster) -> str:
    return cluster.log_file(cluster.nodes[0]).read_text(errors="replace")


def wait_for_broker_log(cluster: LocalCluster, *fragments: str, timeout_s: float = 30.0) -> str:
    """The first line of the broker's log holding every fragment (waiting for it to appear)."""

    def find() -> str | None:
        for line in broker_log(cluster).splitlines():
            if all(fragment in line for fragment in fragments):
                return line
        return None

    return wait_for(find, timeout_s, what=f"a broker log line with {fragments}")  # type: ignore[no-any-return]
