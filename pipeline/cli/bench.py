"""`vmlb bench`: benchmarks. `vmlb bench sim` runs the fleet simulator over the real policies."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import console, err_console
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
    # SIGTERM (a timeout, a CI runner) unwinds like Ctrl-C, so that a benchmark's cleanup runs:
    # the workers, brokers and fleets it started stop with it instead of living on.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


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
    "--sweep/--no-sweep",
    default=True,
    show_default=True,
    help="also run io-aware and the oracle at each strictness of the scenario's hold_sweep_s "
    "(rows `io-aware hold=Xs`, `oracle hold=Xs`) for the p99-versus-overload plot",
)
@click.option(
    "--decision-cost/--no-decision-cost",
    default=None,
    help="also time io-aware's decide() at 100 vs 10,000 hosts, on a fleet with room and on one "
    "at its limits where every job waits (default: on for scale-10k)",
)
@click.option(
    "--fairness",
    is_flag=True,
    help="scenarios with submitters: also run each submitter alone and everyone with fair "
    "queueing off (FIFO), and print each submitter's p99 with everyone over its p99 alone",
)
@click.option("--seed", type=int, default=None, help="override the scenario's seed")
def sim(
    scenario_ref: str,
    policies: str | None,
    as_json: bool,
    out_dir: Path | None,
    no_plots: bool,
    sweep: bool,
    decision_cost: bool | None,
    fairness: bool,
    seed: int | None,
) -> None:
    """Simulate a scenario under each policy and the oracle: response times, overload (I/O asked
    per 1 s interval over the limit), goodput lost, decision cost; and io-aware's trade-off.
    A scenario with submitters also gets a table per submitter (responses, waits)."""
    from benchmarks.sim.arrivals import generate
    from benchmarks.sim.cost import decision_cost as measure_cost
    from benchmarks.sim.engine import run, sweep_label
    from benchmarks.sim.fairness import compare, fairness_table
    from benchmarks.sim.report import as_json as results_json
    from benchmarks.sim.report import markdown_table, submitter_table, write_report
    from benchmarks.sim.scenario import ORACLE, ORACLES, load_scenario
    from pipeline.policy.registry import build_policies

    scenario = load_scenario(scenario_ref)
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    if fairness and not scenario.submitters:
        raise ConfigError(f"--fairness: scenario {scenario.name} names no submitters")
    names = _policy_list(policies) or scenario.policies
    build_policies([name for name in names if name not in ORACLES])  # every unknown at once
    arrivals = generate(scenario)
    results = []

    def simulate(name: str, hold_s: float | None = None) -> None:
        label = name if hold_s is None else sweep_label(name, hold_s)
        same = next((r for r in results if r.policy == name and r.hold_s == hold_s), None)
        if same is not None:  # the sweep's point at the run's own strictness: run once
            results.append(dataclasses.replace(same, policy=label))
            return
        if not as_json:
            console.print(
                f"[dim]simulating {scenario.name} under {label} ({len(arrivals)} jobs)...[/]"
            )
        results.append(run(scenario, name, arrivals, hold_s=hold_s))

    for name in names:
        simulate(name)
    if sweep:
        for name in ("io-aware", ORACLE):
            if name in names:
                for hold_s in scenario.hold_sweep_s:
                    simulate(name, hold_s)
    output: dict[str, Any] = results_json(results)
    compared = []
    if fairness:
        compared = compare(
            scenario,
            names,
            arrivals,
            together={r.policy: r for r in results if r.policy in names},
            progress=None if as_json else lambda step: console.print(f"[dim]fairness: {step}[/]"),
        )
        for row in compared:
            output[row.policy].setdefault("fairness", {})[row.submitter] = row.row()
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
            "waiting_small_us": cost.waiting_small_us,
            "waiting_large_us": cost.waiting_large_us,
            "waiting_ratio": cost.waiting_ratio,
        }
    target = out_dir if out_dir is not None else DEFAULT_RESULTS_DIR / scenario.name
    written = write_report(results, target, plots=not no_plots)
    if compared:
        fairness_md = target / "fairness.md"
        fairness_md.write_text(
            f"# Fairness across submitters: `{scenario.name}` (seed {scenario.seed})\n\n"
            f"{fairness_table(compared)}\n"
        )
        written.append(fairness_md)
    if cost is not None:
        (target / "decision_cost.json").write_text(
            json.dumps(output["io-aware"]["decision_cost"], indent=2) + "\n"
        )
    if as_json:
        click.echo(json.dumps(output, sort_keys=True))
        return
    click.echo(markdown_table(results))
    per_submitter = submitter_table(results)
    if per_submitter:
        click.echo("\nPer submitter (wait: submit to dispatch):\n" + per_submitter)
    if compared:
        click.echo("\nFairness (the same jobs alone, with everyone taking turns, FIFO):")
        click.echo(fairness_table(compared))
    if cost is not None:
        console.print(
            f"io-aware decide(): {cost.small_us:.1f} µs at {cost.small_hosts} hosts, "
            f"{cost.large_us:.1f} µs at {cost.large_hosts} hosts: ratio {cost.ratio:.2f}"
        )
        if cost.waiting_ratio is not None:
            console.print(
                f"io-aware decide(), fleet at its limits (every job waits): "
                f"{cost.waiting_small_us:.1f} µs at {cost.small_hosts} hosts, "
                f"{cost.waiting_large_us:.1f} µs at {cost.large_hosts} hosts: "
                f"ratio {cost.waiting_ratio:.2f}"
            )
    console.print(f"[dim]wrote {', '.join(str(path) for path in written)}[/]")


@bench.command("pipeline")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--broker", default=None, help="bootstrap servers (default: VMLB_BROKER or local)")
@click.option(
    "--rates", default="200,1000", help="offered rates for latency, jobs/s, comma-separated"
)
@click.option("--rate-seconds", default=10.0, show_default=True, help="seconds at each rate")
@click.option("--jobs", default=20_000, show_default=True, help="jobs for the throughput pass")
@click.option("--vms", default=1000, show_default=True, help="registered VMs for the RSS measure")
@click.option("--samples", default=100_000, show_default=True, help="telemetry samples to load")
@click.option(
    "--telemetry-form",
    type=click.Choice(["both", "io-sample", "host-sample"]),
    default="both",
    show_default=True,
    help="how the telemetry phase's samples travel: an IoSample per VM, HostSamples, or both "
    "in turn (their ratio is reported)",
)
@click.option(
    "--telemetry-vms", default=1000, show_default=True, help="VMs the telemetry samples are of"
)
@click.option(
    "--telemetry-vms-per-host",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="VMs per Dom0 in the telemetry phase",
)
@click.option("--telemetry-only", is_flag=True, help="run the telemetry phase alone")
@click.option(
    "--complete/--no-complete",
    default=False,
    help="emulated guests complete queued jobs (jobs may then wait: backlog cap)",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 6),
    default=1,
    show_default=True,
    help="workers sharing the jobs topic's partitions (topics.yaml: 12) while dispatching",
)
def pipeline_bench(
    as_json: bool,
    broker: str | None,
    rates: str,
    rate_seconds: float,
    jobs: int,
    vms: int,
    samples: int,
    telemetry_form: str,
    telemetry_vms: int,
    telemetry_vms_per_host: int,
    telemetry_only: bool,
    complete: bool,
    workers: int,
) -> None:
    """The real worker vs a raw Kafka pass-through: throughput, latency, telemetry, memory."""
    from benchmarks.pipeline_bench import BenchOptions, run_bench
    from benchmarks.pipeline_bench_report import kafka_for, print_table

    try:
        rate_list = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--rates: not numbers: {rates!r}") from None
    if not rate_list or jobs < 1 or vms <= 40:
        raise ConfigError("--rates needs a rate, --jobs >= 1, --vms > 40")
    if telemetry_vms < 1 or samples < telemetry_vms:
        raise ConfigError("--telemetry-vms needs >= 1, and --samples at least one per VM")
    forms = ("io-sample", "host-sample") if telemetry_form == "both" else (telemetry_form,)
    kafka = kafka_for(broker, console)
    # Progress goes to stderr with --json, so that stdout stays one JSON object.
    progress = err_console if as_json else console
    log = lambda text: progress.print(f"[dim]{text}[/]")  # noqa: E731
    options = BenchOptions(
        jobs=jobs,
        rates=rate_list,
        rate_seconds=rate_seconds,
        vms=vms,
        telemetry_samples=samples,
        telemetry_vms=telemetry_vms,
        telemetry_vms_per_host=telemetry_vms_per_host,
        telemetry_forms=forms,
        telemetry_only=telemetry_only,
        complete=complete,
        workers=workers,
    )
    result = run_bench(kafka, options, log)
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        print_table(result, console)


@bench.command("live")
@click.option(
    "--policies",
    default="round-robin,io-aware",
    show_default=True,
    help="comma-separated policies, each run on the demo fleet in turn",
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=10),
    default=120.0,
    show_default=True,
    help="seconds of jobs per policy (each run also starts up and drains)",
)
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the job trace")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object keyed by policy")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_RESULTS_DIR / "live",
    show_default=True,
    help="report directory",
)
def live(policies: str, duration_s: float, seed: int, as_json: bool, out_dir: Path) -> None:
    """The demo's real fleet (broker, worker, hosts, guests) under each policy, same job trace."""
    from rich.console import Console

    from benchmarks.live_bench import markdown_table, run_live, write_report
    from pipeline.policy.registry import build_policies

    names = _policy_list(policies) or []
    build_policies(names)  # every unknown name in one error, before any work
    progress = Console(stderr=True) if as_json else console
    report = run_live(names, duration_s, seed, progress)
    written = write_report(report, out_dir)
    if as_json:
        click.echo(json.dumps(report))  # policies in the order they ran
        return
    click.echo(markdown_table(report))
    console.print(f"[dim]wrote {', '.join(str(path) for path in written)}[/]")
    if any(summary["lost"] for summary in report["policies"].values()):
        raise SystemExit(1)


@bench.command("chaos")
@click.option(
    "--scenario",
    "scenario_names",
    multiple=True,
    help="a scenario to run (repeatable; default: every one; see --list)",
)
@click.option("--runs", type=click.IntRange(min=1), default=1, show_default=True,
              help="seeded runs per scenario (run k uses seed S + k)")  # fmt: skip
@click.option("--jobs", type=click.IntRange(min=1), default=1500, show_default=True,
              help="jobs per run")  # fmt: skip
@click.option("--rate", "rate_per_s", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, help="jobs submitted per second")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the first run")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (scenarios, runs)")
@click.option(
    "--broker",
    default=None,
    help="an existing cluster for the scenarios that do not fault the broker "
    "(default: the harness starts its own)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_RESULTS_DIR / "chaos",
    show_default=True,
    help="report directory (each run's logs go to .vmlb/chaos/)",
)
@click.option("--list", "list_only", is_flag=True, help="list the scenarios and exit")
def chaos(
    scenario_names: tuple[str, ...],
    runs: int,
    jobs: int,
    rate_per_s: float,
    seed: int,
    as_json: bool,
    broker: str | None,
    out_dir: Path,
    list_only: bool,
) -> None:
    """Faults while jobs flow (worker, guest, Dom0 and broker kills, outages, scaling); then
    every topic read back: lost, run twice, stranded, unbacked jobs, and recovery times."""
    from rich.console import Console

    from benchmarks.chaos.scenarios import select
    from benchmarks.chaos.suite import run_chaos

    scenarios = select(list(scenario_names))
    if list_only:
        for scenario in scenarios:
            click.echo(f"{scenario.name:24} {scenario.summary}")
        return
    progress = Console(stderr=True) if as_json else console
    report = run_chaos(
        scenarios, runs=runs, jobs=jobs, rate_per_s=rate_per_s, seed=seed, broker=broker,
        out_dir=out_dir, console=progress,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report))
    else:
        from benchmarks.chaos.report import evidence, markdown_table

        click.echo(markdown_table(report["scenarios"]))
        for line in evidence(report["runs"]):
            console.print(f"[red]{line}[/]")
    if report["defects"]:
        raise SystemExit(1)
