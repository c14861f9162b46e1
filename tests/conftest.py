"""Test tiers and the session's one Kafka broker.

Unit tests (tests/unit) use fakes and Faust's `test_context()`. Integration tests (marked
`integration`) use a real broker, found in this order:

1. `KAFKA_BOOTSTRAP` if set: an existing cluster;
2. testcontainers' Kafka if a Docker engine answers;
3. the local broker from the installed jars (`pipeline.ops.broker`), on a free port, in a temp dir.

It never skips: if no broker can be had, every integration test errors with the reason.
Each test gets its own topic prefix (`kafka_settings`), so tests never see each other's messages.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ops.ports import free_port_run
from pipeline.settings import KafkaSettings
from pipeline.topics import Topics, apply_topics, load_topics


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap servers of a real Kafka broker for this test session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from pipeline.ops.broker.local import LocalCluster

    cluster = LocalCluster(Path(tmp_path_factory.mktemp("kafka")), port=free_port_run(2))
    bootstrap = cluster.start()
    try:
        yield bootstrap
    finally:
        cluster.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for one test: the session broker and a topic prefix no other test uses."""
    return KafkaSettings(broker=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
def topics(kafka_settings: KafkaSettings) -> Topics:
    """Every topic of topics.yaml created under this test's prefix."""
    declared = load_topics(prefix=kafka_settings.topic_prefix)
    apply_topics(kafka_settings, declared.all_specs())
    return declared


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
