"""docker/docker-compose.yml must stay in step with the local path (same port, same topics)."""

import yaml

from pipeline.ops.broker.install import KAFKA_VERSION
from pipeline.ops.broker.local import DEFAULT_PORT
from pipeline.topics import REPO_ROOT

COMPOSE = REPO_ROOT / "docker" / "docker-compose.yml"


def test_compose_runs_the_pinned_kafka_on_the_local_port():
    compose = yaml.safe_load(COMPOSE.read_text())
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert f"{DEFAULT_PORT}:{DEFAULT_PORT}" in kafka["ports"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert f"127.0.0.1:{DEFAULT_PORT}" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_applies_the_same_topics_file():
    compose = yaml.safe_load(COMPOSE.read_text())
    topics = compose["services"]["topics"]
    assert topics["environment"]["VMLB_BROKER"] == f"127.0.0.1:{DEFAULT_PORT}"
    assert "..:/src:ro" in topics["volumes"]  # topics.yaml is read from the repository itself
    assert topics["command"].endswith('vmlb topics apply"')


def test_pom_pins_the_same_kafka_version():
    pom = (REPO_ROOT / "docker" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
