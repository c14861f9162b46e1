"""A real Prometheus (Debian's package) scraping a real worker, with the shipped scrape config.

The worker's exposition must pass `promtool check metrics`; PromQL over what Prometheus scraped
must return the series an operator expects (hosts over their limits, waiting jobs per type,
response-time percentiles); and every query of the shipped Grafana dashboard must be valid
PromQL over metrics the worker exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.ops.ports import free_port
from pipeline.topics import REPO_ROOT
from tests.integration.pipeline.conftest import wait_for
from tests.integration.pipeline.test_dispatch import FAST, two_hosts_one_saturated

SCRAPE_CONFIG = REPO_ROOT / "docker" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO_ROOT / "docker" / "grafana" / "dashboards" / "vmlb.json"
#: Grafana's interval variables, as Grafana would fill them in for a short range.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__range": "5m"}


class Prometheus:
    """`prometheus` on a free local port, scraping `target` with the shipped config."""

    def __init__(self, target: str, workdir: Path) -> None:
        workdir.mkdir(parents=True)
        config = yaml.safe_load(SCRAPE_CONFIG.read_text())
        config["global"]["scrape_interval"] = "1s"  # the test's only change but the target
        [job] = config["scrape_configs"]
        job["static_configs"] = [{"targets": [target]}]
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        command = [
            "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query; fails on anything but `status: success`."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:  # a bad query is a 400 with the error in the body
            body = json.loads(exc.read())
        assert body["status"] == "success", f"{promql}: {body}"
        return body["data"]["result"]

    def by(self, label: str, promql: str) -> dict[str, float]:
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(promql)}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        server = Prometheus(target, tmp_path / f"prometheus{len(started)}")
        started.append(server)
        wait_for(server.ready, timeout_s=90, what="Prometheus ready")
        return server

    yield start
    for server in started:
        server.stop()


def test_promtool_accepts_the_shipped_scrape_config(tmp_path):
    checked = subprocess.run(
        ["promtool", "check", "config", str(SCRAPE_CONFIG)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_scrapes_a_worker_and_answers_an_operator_s_queries(
    kafka_settings, topics, fleet, start_worker, prometheus_for
):
    assert shutil.which("prometheus") and shutil.which("promtool"), "tools/system-packages.sh"
    two_hosts_one_saturated(fleet)  # h1 above its limit, h2 well under; io jobs go to b1
    fleet.host("h3", io_limit=1000)
    fleet.vm("c1", "h3", "batch")  # the only batch VM, on a saturated host: batch jobs wait
    fleet.flush()
    fleet.report("c1", 1500, jobs_per_s=5, job_type="batch")
    worker = start_worker(**FAST)
    wait_for(
        lambda: (
            {h["host_id"]: h["eligible"] for h in worker.get("/hosts")["hosts"]}
            == {"h1": False, "h2": True, "h3": False}
        ),
        what="h1 and h3 over their limits, h2 eligible",
    )
    for _ in range(3):
        fleet.submit("batch")
    for _ in range(5):
        fleet.submit("io")
    fleet.flush()
    wait_for(lambda: worker.get("/waiting")["count"] == 3, what="the 3 batch jobs waiting")

    exposition = worker.get_text("/metrics")
    linted = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True
    )
    assert linted.returncode == 0 and not (linted.stdout + linted.stderr).strip(), (
        linted.stdout + linted.stderr
    )

    prometheus = prometheus_for(f"127.0.0.1:{worker.port}")
    wait_for(
        lambda: prometheus.by("job", 'up{job="vmlb"}') == {"vmlb": 1.0},
        what="the worker scraped and up",
    )
    over = wait_for(
        lambda: (
            (
                o := prometheus.by("host", "max by (host) (vmlb_host_over_limit_seconds_total)")
            ).keys()
            == {"h1", "h3"}
            and min(o.values()) > 0
            and o
        ),
        what="seconds over limit counted for h1 and h3 (never for h2)",
    )
    assert all(seconds > 0 for seconds in over.values())
    assert prometheus.by("host", "max by (host) (vmlb_host_eligible)") == {
        "h1": 0.0,
        "h2": 1.0,
        "h3": 0.0,
    }
    assert wait_for(
        lambda: prometheus.by("job_type", "sum by (job_type) (vmlb_waiting_jobs)"),
        what="waiting jobs per type scraped",
    ) == {"batch": 3.0}
    refused = prometheus.by(
        "filter", 'sum by (filter) (vmlb_decision_refusals_total{outcome="waiting"})'
    )
    # The first batch job is refused by the filter; those arriving while it waits wait behind it
    # (refused by no filter) unless a retry judged them first.
    assert refused.get("at limit (hysteresis)", 0) >= 1, refused
    # The fleet's guests report completions 0.3 s after submission: p99 lies in (0.25, 0.5].
    p99 = wait_for(
        lambda: prometheus.by(
            "job_type",
            "histogram_quantile(0.99, sum by (job_type, le)"
            " (rate(vmlb_job_response_seconds_bucket[30s])))",
        ),
        what="response-time p99 per job type",
    )
    assert set(p99) == {"io", "batch"} and all(0.25 < v <= 0.5 for v in p99.values()), p99
    waited = prometheus.by("job_type", "sum by (job_type) (vmlb_job_waiting_seconds_count)")
    assert waited.get("io") == 5.0, waited

    # The dashboard: every query is valid PromQL here, over metrics this worker exports.
    exported = set(re.findall(r"^# TYPE (vmlb_\w+) (\w+)", exposition, re.MULTILINE))
    names = {name for name, _ in exported}  # a counter's TYPE line names its _total series
    for name, kind in exported:
        if kind == "histogram":
            names |= {name + suffix for suffix in ("_bucket", "_count", "_sum")}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    answered = 0
    for expr in exprs:
        assert set(re.findall(r"\bvmlb_\w+", expr)) <= names, expr
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        answered += bool(prometheus.query(expr))
    assert answered >= 0.8 * len(exprs), f"{answered} of {len(exprs)} dashboard queries had data"
