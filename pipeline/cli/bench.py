"""`vmlb bench`: benchmarks. `vmlb bench sim` runs the fleet simulator over the real policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import console
from pipeline.errors import ConfigError

#: Where reports go by default: benchmarks/results/<scenario>/.
DEFAULT_RESULTS_DIR = Path("benchmarks") / "results"


def _policy_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise ConfigError("--policies: give at least one policy name")
    return names


@click.group()
def bench() -> None:
    """Benchmarks of the dispatch policies."""


@bench.command("sim")
@click.option(
    "--scenario",
    "scenario_ref",
    required=True,
    help="scenario name (benchmarks/scenarios) or YAML path",
)
@click.option(
    "--policies", default=None, help="comma-separated policies (default: the scenario's list)"
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object keyed by policy name")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="report directory (default: benchmarks/results/<scenario>/)",
)
@click.option("--no-plots", is_flag=True, help="write the tables but not the PNG plots")
@click.option(
    "--decision-cost/--no-decision-cost",
    default=None,
    help="also time io-aware's decide() at 100 vs 10,000 hosts (default: on for scale-10k)",
)
def sim(
    scenario_ref: str,
    policies: str | None,
    as_json: bool,
    out_dir: Path | None,
    no_plots: bool,
    decision_cost: bool | None,
) -> None:
    """Simulate a scenario under each policy: response times, overload, decision cost."""
    from benchmarks.sim.arrivals import generate
    from benchmarks.sim.cost import decision_cost as measure_cost
    from benchmarks.sim.engine import run
    from benchmarks.sim.report import as_json as results_json
    from benchmarks.sim.report import markdown_table, write_report
    from benchmarks.sim.scenario import load_scenario
    from pipeline.policy.registry import build_policies

    scenario = load_scenario(scenario_ref)
    names = _policy_list(policies) or scenario.policies
    build_policies(names)  # every unknown name in one error, before any work
    arrivals = generate(scenario)
    results = []
    for name in names:
        if not as_json:
            console.print(
                f"[dim]simulating {scenario.name} under {name} ({len(arrivals)} jobs)...[/]"
            )
        results.append(run(scenario, name, arrivals))
    output: dict[str, Any] = results_json(results)
    measure = decision_cost if decision_cost is not None else scenario.name == "scale-10k"
    cost = None
    if measure:
        cost = measure_cost("io-aware")
        output.setdefault("io-aware", {})["decision_cost"] = {
            "small_hosts": cost.small_hosts,
            "large_hosts": cost.large_hosts,
            "small_us": cost.small_us,
            "large_us": cost.large_us,
            "ratio": cost.ratio,
        }
    target = out_dir if out_dir is not None else DEFAULT_RESULTS_DIR / scenario.name
    written = write_report(results, target, plots=not no_plots)
    if cost is not None:
        (target / "decision_cost.json").write_text(
            json.dumps(output["io-aware"]["decision_cost"], indent=2) + "\n"
        )
    if as_json:
        click.echo(json.dumps(output, sort_keys=True))
        return
    click.echo(markdown_table(results))
    if cost is not None:
        console.print(
            f"io-aware decide(): {cost.small_us:.1f} µs at {cost.small_hosts} hosts, "
            f"{cost.large_us:.1f} µs at {cost.large_hosts} hosts: ratio {cost.ratio:.2f}"
        )
    console.print(f"[dim]wrote {', '.join(str(path) for path in written)}[/]")
