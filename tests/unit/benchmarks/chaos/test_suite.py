"""benchmarks.chaos.suite: a run the harness cannot finish is reported, the others kept."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from benchmarks.chaos import suite
from benchmarks.chaos.report import COUNTS
from benchmarks.chaos.scenarios import select
from pipeline.errors import BrokerError


def finished(scenario: str, seed: int) -> dict[str, Any]:
    run: dict[str, Any] = {key: 0 for key, _ in COUNTS}
    run.update(
        scenario=scenario, seed=seed, submitted=10, completed=10, p99_response_s=1.0,
        faults=[], unplanned_worker_exits=[], drain="every job ended", wall_s=1.0,
        evidence={},
    )  # fmt: skip
    return run


class NoBrokers:
    def __init__(self, external: str | None) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_failed_run_is_reported_and_every_finished_run_kept(monkeypatch, tmp_path):
    def run_once(scenario, options, brokers, log):
        if options.seed == 2:
            raise BrokerError("Kafka did not accept clients within 300s")
        return finished(scenario.name, options.seed)

    monkeypatch.setattr(suite, "run_once", run_once)
    monkeypatch.setattr(suite, "Brokers", NoBrokers)
    report = suite.run_chaos(
        select(["none"]), runs=3, jobs=10, rate_per_s=1.0, seed=1, broker=None,
        out_dir=tmp_path, console=Console(file=io.StringIO()),
    )  # fmt: skip
    assert [run["seed"] for run in report["runs"]] == [1, 3]
    assert report["failed_runs"] == [
        {"scenario": "none", "seed": 2, "error": "Kafka did not accept clients within 300s"}
    ]
    assert any("run failed" in defect for defect in report["defects"])  # the command exits 1
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert len(on_disk["runs"]) == 2 and on_disk["failed_runs"] == report["failed_runs"]
    assert "Runs that failed" in (tmp_path / "results.md").read_text()
