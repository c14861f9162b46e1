"""Scenario files: the shipped ones load, errors name the key, runs are deterministic; submitters
are validated (one source of jobs each, shares adding up, known job types, a priority in range)."""

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
    for required in (
        "mixed-io",
        "burst",
        "stale-telemetry",
        "host-degraded",
        "scale-10k",
        "fairness-flood",
        "priority-overload",
    ):
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


def test_device_caps_are_one_per_vm_or_one_for_all() -> None:
    data = TINY.model_dump(mode="json")
    vms = data["hosts"][0]["vms"]
    data["hosts"][0]["device_ops_per_s"] = [100.0] * (len(vms) + 1)
    with pytest.raises(ConfigError, match=r"hosts\.0.*device_ops_per_s"):
        parse_scenario(data, "bad.yaml")
    data["hosts"][0]["device_ops_per_s"] = [None] + [100.0] * (len(vms) - 1)
    group = parse_scenario(data, "ok.yaml").hosts[0]
    assert group.device_cap(0) is None and group.device_cap(1) == 100.0
    data["hosts"][0]["device_ops_per_s"] = 50.0
    assert parse_scenario(data, "ok.yaml").hosts[0].device_cap(len(vms) - 1) == 50.0
    assert TINY.hosts[0].device_cap(0) is None


def test_device_spread_caps_scale_with_host_capacity() -> None:
    scenario = load_scenario("device-spread")
    sizes = {group.capacity_ops_per_s for group in scenario.hosts}
    assert len(sizes) == 4
    for group in scenario.hosts:
        caps = [group.device_cap(i) for i in range(len(group.vms))]
        assert caps == [round(s * group.capacity_ops_per_s) for s in (0.5, 0.5, 0.38, 0.02)]


def test_rate_must_be_given_once() -> None:
    data = TINY.model_dump(mode="json")
    data["arrivals"]["rate_per_s"] = 3.0
    with pytest.raises(ConfigError, match="exactly one of offered_load and rate_per_s"):
        parse_scenario(data, "bad.yaml")


# --- submitters ---------------------------------------------------------------------------------

FLOOD = load_scenario("fairness-flood")


def flood_data() -> dict:
    return FLOOD.model_dump(mode="json", exclude_none=True)


def shared_data(*shares: float) -> dict:
    data = flood_data()
    data["arrivals"] = {"rate_per_s": 5.0}
    data["submitters"] = [{"name": f"s{i}", "share": share} for i, share in enumerate(shares)]
    return data


def test_shipped_fairness_scenarios_name_their_submitters() -> None:
    assert [s.name for s in FLOOD.submitters] == ["victim", "flooder"]
    flooder = FLOOD.submitters[1]
    assert flooder.submits_at(20.0) and not flooder.submits_at(50.0)
    priority = load_scenario("priority-overload")
    assert {s.name: s.priority for s in priority.submitters} == {"batch": 2, "interactive": 8}
    assert TINY.submitters == [] and TINY.dispatcher.fair_queueing


def test_a_submitter_takes_a_share_or_has_arrivals_not_both_nor_neither() -> None:
    data = flood_data()
    data["submitters"][0]["share"] = 0.5
    with pytest.raises(ConfigError, match=r"submitters\.0: .*exactly one of share .* and arrivals"):
        parse_scenario(data, "bad.yaml")
    data = flood_data()
    del data["submitters"][1]["arrivals"]
    with pytest.raises(ConfigError, match=r"submitters\.1: .*exactly one of share"):
        parse_scenario(data, "bad.yaml")


def test_shares_must_add_up_to_one() -> None:
    assert [s.share for s in parse_scenario(shared_data(0.25, 0.75), "ok").submitters] == [
        0.25,
        0.75,
    ]
    with pytest.raises(ConfigError, match=r"shares of the arrivals add up to 0\.9, not 1"):
        parse_scenario(shared_data(0.4, 0.5), "bad.yaml")


def test_the_scenarios_arrivals_are_required_unless_every_submitter_has_its_own() -> None:
    data = shared_data(1.0)
    del data["arrivals"]
    with pytest.raises(ConfigError, match="arrivals: required"):
        parse_scenario(data, "bad.yaml")
    data = TINY.model_dump(mode="json")
    del data["arrivals"]
    with pytest.raises(ConfigError, match="arrivals: required"):
        parse_scenario(data, "bad.yaml")
    data = flood_data()
    data["arrivals"] = {"rate_per_s": 5.0}  # nobody would submit them
    with pytest.raises(ConfigError, match="no submitter takes a share"):
        parse_scenario(data, "bad.yaml")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("priority", 12, r"submitters\.0\.priority: Input should be less than or equal to 9"),
        ("priority", -1, r"submitters\.0\.priority: Input should be greater than or equal to 0"),
        ("priority", "high", r"submitters\.0\.priority: Input should be a valid integer"),
        ("priority", 4.0, r"submitters\.0\.priority: Input should be a valid integer"),
        ("name", "a b", r"submitters\.0\.name: String should match pattern"),
        ("job_types", {"gpu": 1}, r"submitters\.0\.job_types: unknown job type 'gpu'"),
        ("job_types", {"heavy": 0}, r"submitters\.0\.job_types\.heavy: Input should be greater"),
        ("to_s", 0.0, r"submitters\.0\.to_s: Input should be greater than 0"),
        ("colour", "red", r"submitters\.0\.colour: Extra inputs are not permitted"),
    ],
)
def test_a_bad_submitter_field_is_named(field: str, value: object, message: str) -> None:
    data = flood_data()
    data["submitters"][0][field] = value
    with pytest.raises(ConfigError, match=message):
        parse_scenario(data, "bad.yaml")


def test_a_stretch_ends_after_it_starts_and_names_are_unique() -> None:
    data = flood_data()
    data["submitters"][1]["to_s"] = 10
    with pytest.raises(ConfigError, match=r"submitters\.1: .*to_s 10 must be after from_s 20"):
        parse_scenario(data, "bad.yaml")
    data = flood_data()
    data["submitters"][1]["name"] = "victim"
    with pytest.raises(ConfigError, match="each name once; repeated: victim"):
        parse_scenario(data, "bad.yaml")


def test_offered_load_of_a_submitter_counts_its_own_mix() -> None:
    data = flood_data()
    data["submitters"][0]["job_types"] = {"light": 1}
    scenario = parse_scenario(data, "ok")
    victim = scenario.submitters[0]
    assert victim.arrivals is not None
    rate = scenario.base_rate_per_s(victim.arrivals, scenario.job_type_weights(victim))
    # 15% of 8000 ops/s in light jobs of 20 ops: 60 jobs/s.
    assert rate == pytest.approx(0.15 * 8000 / 20)


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


def test_cli_fairness_on_a_scenario_without_submitters_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["bench", "sim", "--scenario", "tiny", "--fairness", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "names no submitters" in str(result.exception)


def test_cli_unknown_policies_all_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["bench", "sim", "--scenario", "tiny", "--policies", "fast,slow", "--out", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "'fast'" in str(result.exception) and "'slow'" in str(result.exception)
