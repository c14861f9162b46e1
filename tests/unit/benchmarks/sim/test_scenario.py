"""Scenario files: the shipped ones load, errors name the key, runs are deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from benchmarks.sim.arrivals import generate
from benchmarks.sim.engine import run
from benchmarks.sim.scenario import available_scenarios, load_scenario, parse_scenario
from pipeline.cli.main import cli
from pipeline.errors import ConfigError
from pipeline.policy.registry import POLICY_NAMES

TINY = load_scenario("tiny")


def test_shipped_scenarios_load() -> None:
    names = available_scenarios()
    for required in ("mixed-io", "burst", "stale-telemetry", "host-degraded", "scale-10k"):
        assert required in names
        assert load_scenario(required).name == required
    assert sum(group.count for group in load_scenario("scale-10k").hosts) == 10_000


def test_mixed_io_offers_85_percent_of_fleet_io() -> None:
    scenario = load_scenario("mixed-io")
    offered = scenario.base_rate_per_s() * scenario.mean_io_per_job()
    assert offered == pytest.approx(0.85 * scenario.fleet_capacity_ops_per_s())
    assert sum(group.count for group in scenario.hosts) == 16


def test_unknown_key_is_named() -> None:
    data = TINY.model_dump(mode="json")
    data["hosts"][0]["capcity_ops_per_s"] = 5
    with pytest.raises(ConfigError, match=r"hosts\.0\.capcity_ops_per_s"):
        parse_scenario(data, "bad.yaml")


def test_unknown_job_type_and_host_are_named() -> None:
    data = TINY.model_dump(mode="json")
    data["hosts"][0]["vms"] = ["io", "gpu"]
    with pytest.raises(ConfigError, match=r"hosts\.0\.vms: unknown job type 'gpu'"):
        parse_scenario(data, "bad.yaml")
    data = TINY.model_dump(mode="json")
    data["events"] = [{"at_s": 1, "host": "h999", "capacity_factor": 0.5}]
    with pytest.raises(ConfigError, match="h999"):
        parse_scenario(data, "bad.yaml")


def test_rate_must_be_given_once() -> None:
    data = TINY.model_dump(mode="json")
    data["arrivals"]["rate_per_s"] = 3.0
    with pytest.raises(ConfigError, match="exactly one of offered_load and rate_per_s"):
        parse_scenario(data, "bad.yaml")


def test_unknown_scenario_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="mixed-io"):
        load_scenario("no-such-scenario")


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(TINY.model_dump(mode="json") | {"name": "mine"}))
    assert load_scenario(str(path)).name == "mine"


def _numbers(policy: str, seed: int) -> dict:
    scenario = TINY.model_copy(update={"seed": seed})
    summary = run(scenario, policy, generate(scenario)).summary()
    for timing in ("sim_wall_s", "decision_us"):
        summary.pop(timing)
    return summary


def test_same_seed_same_results() -> None:
    assert _numbers("io-aware", 9) == _numbers("io-aware", 9)
    assert _numbers("random", 9) == _numbers("random", 9)
    assert _numbers("io-aware", 9) != _numbers("io-aware", 10)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_no_job_is_lost(policy: str) -> None:
    numbers = _numbers(policy, 9)
    assert numbers["lost"] == 0
    assert numbers["submitted"] > 0


def test_cli_json_on_tiny_scenario(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "sim",
            "--scenario",
            "tiny",
            "--policies",
            "io-aware,round-robin",
            "--json",
            "--out",
            str(tmp_path),
            "--no-plots",
            "--no-sweep",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"io-aware", "round-robin"}
    for numbers in data.values():
        for key in ("throughput_per_s", "p99_response_s", "overload_s", "lost", "decision_us"):
            assert key in numbers
        assert numbers["lost"] == 0
    assert (tmp_path / "results.md").read_text().count("| io-aware |") == 1


def test_cli_unknown_policies_all_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["bench", "sim", "--scenario", "tiny", "--policies", "fast,slow", "--out", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "'fast'" in str(result.exception) and "'slow'" in str(result.exception)
