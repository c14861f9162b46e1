"""docker/ checked statically against the repository (our machines have no Docker engine).

The compose stack must run what the local path runs: the pinned Kafka on the local port, the
topics of topics.yaml, `vmlb` commands that exist with options that parse, the demo's hosts,
a Prometheus scraping the worker's metrics port and a Grafana provisioned with a dashboard whose
every query names metrics the worker exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from pipeline.cli.main import cli
from pipeline.edge.metrics import PipelineMetrics
from pipeline.ops.broker.install import KAFKA_VERSION
from pipeline.ops.broker.local import DEFAULT_PORT
from pipeline.ops.demo.fleet import FLEET
from pipeline.settings import PipelineSettings
from pipeline.topics import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "vmlb.json"
#: Services built from our Dockerfile, i.e. running `vmlb` commands.
VMLB_SERVICES = ("topics", "worker", "host-a", "host-b", "jobs")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def parse_vmlb(args: list[str]) -> click.Context:
    """Parse `vmlb ARGS` as the CLI would (unknown commands and options fail), run nothing."""
    context = click.Context(cli, info_name="vmlb")
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group):  # `topics apply`: a command of a group
        if command is not cli and (not rest or rest[0].startswith("-")):
            # A group run with options of its own (`vmlb host --id ...`).
            return command.make_context(context.info_name, rest, parent=context.parent)
        name, found, rest = command.resolve_command(context, rest)
        assert name is not None and found is not None, args
        command = found
        if isinstance(command, click.Group):
            context = click.Context(command, info_name=name, parent=context)
    return command.make_context(name, rest, parent=context)


def exported_metric_names() -> set[str]:
    """Every series name a worker's registry can expose (with histogram and counter suffixes)."""
    names = set()
    for family in PipelineMetrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum", "_created")}
        else:
            names.add(family.name)
    return names


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for p in json.loads(DASHBOARD.read_text())["panels"]
        for target in p.get("targets", [])
    ]


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bvmlb_[a-z0-9_]+", expr))


# --- the broker and the topics -----------------------------------------------------------------


def test_compose_runs_the_pinned_kafka_on_the_local_port():
    kafka = service("kafka")
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert f"{DEFAULT_PORT}:{DEFAULT_PORT}" in kafka["ports"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    # Host clients (kcat, vmlb submit) at 127.0.0.1:9092; containers by service name.
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"PLAINTEXT://127.0.0.1:{DEFAULT_PORT}" in advertised
    assert "DOCKER://kafka:19092" in advertised
    for listener in advertised:
        assert listener.split("://")[0] in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]


def test_every_vmlb_service_uses_the_repository_s_image_and_the_containers_listener():
    for name in VMLB_SERVICES:
        svc = service(name)
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
        assert svc["environment"]["VMLB_BROKER"] == "kafka:19092", name
    assert (REPO_ROOT / service("worker")["build"]["dockerfile"]).exists()


def test_every_vmlb_command_exists_and_its_options_parse():
    for name in VMLB_SERVICES:
        command = service(name)["command"]
        context = parse_vmlb(command)
        assert context.command.name in command, name


def test_topics_are_applied_before_anything_else_starts():
    assert service("topics")["command"] == ["topics", "apply"]
    assert service("topics")["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in ("worker", "host-a", "host-b"):
        assert service(name)["depends_on"] == {
            "topics": {"condition": "service_completed_successfully"}
        }


def test_the_emulated_hosts_are_the_demo_s_own():
    demo = {host.host_id: host for host in FLEET}
    for name in ("host-a", "host-b"):
        options = parse_vmlb(service(name)["command"]).params
        host = demo[options["host_id"]]
        assert options["io_capacity"] == host.io_capacity_ops_per_s
        assert options["io_limit"] == host.io_limit_ops_per_s
        assert list(options["vms"]) == [host.vm_flag(vm_id) for vm_id, _ in host.vms]


# --- the image ---------------------------------------------------------------------------------


def test_the_dockerfile_copies_what_exists_and_installs_vmlb_editable():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert next(line for line in lines if line.startswith("FROM")) == "FROM python:3.11-slim"
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), line
    text = DOCKERFILE.read_text()
    assert "libvirt-dev" in text and "pkg-config" in text  # libvirt-python builds
    assert "pip install -q -e ." in text  # topics.yaml is read beside the packages
    assert 'ENTRYPOINT ["vmlb"]' in text
    # The worker answers on the published port from outside its container.
    assert "VMLB_WEB_HOST=0.0.0.0" in text
    default_port = PipelineSettings().web_port
    assert f"EXPOSE {default_port}" in text
    assert f"{default_port}:{default_port}" in service("worker")["ports"]


def test_the_build_context_leaves_out_the_virtualenv_and_git():
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git"} <= set(ignored)


# --- Prometheus and Grafana -------------------------------------------------------------------


def mounts(name: str) -> dict[str, str]:
    """container path -> repository path of each read-only bind mount of a service."""
    found = {}
    for volume in service(name)["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro", volume
        found[target] = source
    return found


def test_prometheus_scrapes_the_worker_s_metrics_port():
    [(target, source)] = mounts("prometheus").items()
    assert target == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((DOCKER / source).read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": [f"worker:{PipelineSettings().web_port}"]}]


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard():
    found = mounts("grafana")
    provisioning = DOCKER / found["/etc/grafana/provisioning"]
    [datasource] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "vmlb.yml").read_text())["providers"]
    dashboards_in_container = provider["options"]["path"]
    assert (DOCKER / found[dashboards_in_container] / DASHBOARD.name) == DASHBOARD
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_in_container}/{DASHBOARD.name}"

    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_the_dashboard_s_panels_are_laid_out_and_identified_once():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize("expr", dashboard_exprs())
def test_every_dashboard_query_names_only_metrics_the_worker_exports(expr: str):
    names = metric_names_in(expr)
    assert names or "up{" in expr, expr
    assert names <= exported_metric_names(), expr


def test_the_dashboard_shows_what_operators_asked_for():
    shown = set().union(*(metric_names_in(expr) for expr in dashboard_exprs()))
    for wanted in (
        "vmlb_job_response_seconds_bucket",
        "vmlb_job_waiting_seconds_bucket",
        "vmlb_vm_queued_jobs",
        "vmlb_vm_queue_oldest_age_seconds",
        "vmlb_waiting_jobs",
        "vmlb_waiting_oldest_age_seconds",
        "vmlb_host_over_limit_seconds_total",
        "vmlb_host_telemetry_age_seconds",
        "vmlb_decisions_total",
        "vmlb_decision_refusals_total",
    ):
        assert wanted in shown, wanted


def test_pom_pins_the_same_kafka_version():
    pom = (REPO_ROOT / "docker" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


def test_every_path_compose_mounts_exists():
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).resolve().exists(), (name, volume)
    assert Path(DOCKER / "prometheus" / "prometheus.yml").exists()
