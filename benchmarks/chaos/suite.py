"""One `vmlb bench chaos` invocation: every scenario asked for, `runs` seeded runs each.

Runs go one after the other (the machine is small); scenarios that do not fault the broker
share the harness's single-node cluster, each run on topics of its own. The report (a table
and the JSON of every run) goes to the results directory, with the machine's load average
at start and end, since every time in it depends on that.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.chaos.fleet import Brokers
from benchmarks.chaos.report import defects, summarize, write_report
from benchmarks.chaos.run import RunOptions, run_once
from benchmarks.chaos.scenarios import Scenario
from pipeline.errors import ConfigError, VmlbError

LOG_DIR = Path(".vmlb") / "chaos"


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_chaos(
    scenarios: list[Scenario],
    *,
    runs: int,
    jobs: int,
    rate_per_s: float,
    seed: int,
    broker: str | None,
    out_dir: Path,
    console: Console,
) -> dict[str, Any]:
    if broker is not None:
        refused = [s.name for s in scenarios if s.faults_broker or s.nodes != 1]
        if refused:
            raise ConfigError(
                f"--broker: {', '.join(refused)} fault or size the broker: "
                "they need the harness's own (leave out --broker)"
            )
    brokers = Brokers(external=broker)
    # SIGTERM (and SIGINT, which a shell ignores in background jobs) stops the runs through
    # their `finally`s, so every process the harness started is stopped with it.
    signal.signal(signal.SIGTERM, _interrupt)
    load_at_start = os.getloadavg()
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    try:
        for scenario in scenarios:
            for k in range(runs):
                options = RunOptions(jobs, rate_per_s, seed + k, LOG_DIR)
                console.print(
                    f"[bold]chaos[/] {scenario.name} run {k + 1}/{runs} (seed {seed + k})"
                )
                try:
                    result = run_once(
                        scenario, options, brokers, lambda text: console.print(f"[dim]{text}[/]")
                    )
                except VmlbError as exc:
                    # The harness itself could not go on (e.g. a restarted broker that never
                    # came back): the run is reported as failed, the others still count.
                    console.print(f"[red]  run failed: {exc}[/]")
                    failed.append({"scenario": scenario.name, "seed": seed + k, "error": str(exc)})
                    continue
                results.append(result)
                # Every finished run is on disk at once: a long invocation cut short keeps them.
                write_report(results, out_dir, f"(partial: {len(results)} runs so far)", failed)
                console.print(
                    f"[dim]  {result['submitted']} submitted, {result['completed']} completed, "
                    f"{result['lost']} lost, {result['stranded']} stranded "
                    f"({result['drain']}, {result['wall_s']:.0f} s)[/]"
                )
    finally:
        brokers.close()
    rows = summarize(results)
    load_at_end = os.getloadavg()
    header = (
        f"`vmlb bench chaos --runs {runs} --jobs {jobs} --rate {rate_per_s:g} --seed {seed}`; "
        f"load average {load_at_start[0]:.1f} at start, {load_at_end[0]:.1f} at end, "
        f"{os.cpu_count()} cores; {time.monotonic() - started:.0f} s"
    )
    written = write_report(results, out_dir, header, failed)
    console.print(f"[dim]wrote {', '.join(str(p) for p in written)}[/]")
    return {
        "scenarios": rows,
        "runs": results,
        "defects": defects(rows)
        + [f"{run['scenario']} seed {run['seed']}: run failed: {run['error']}" for run in failed],
        "failed_runs": failed,
        "load_average": {"start": load_at_start, "end": load_at_end},
    }
