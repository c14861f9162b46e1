"""`vmlb bench live`: the demo's real fleet under each policy, with the same job trace.

Each policy gets one full `vmlb demo` run (broker, worker, four emulated hosts with their Dom0
producers and guests, the job generator), one after the other on the same broker: the generator
is seeded, so every run submits the same sequence of job types at the same offsets from its
start (a Poisson process ramping to 130% of the fleet's I/O capacity; `pipeline.ops.demo.fleet`).
The figures are the demo's own summary, taken from the topics: response times from the
guests' completions (and, as in the simulator, a p99 over every submitted job in which a job
still unfinished after the drain counts with its age); overload as the simulator defines it,
the I/O each host's guests asked of its channel per second against its limit (the hosts' own
accounting), with the goodput lost to collapse and, beside them, what Dom0's served samples
show over the limit (`pipeline.ops.demo.summary`).

Real processes on a shared machine: expect a few percent of run-to-run noise; compare the
policies within one invocation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline.ops.demo.run import DemoOptions, run_demo

#: The summary fields compared, in table order.
FIELDS = (
    ("submitted", "submitted"),
    ("completed", "completed"),
    ("lost", "lost"),
    ("waiting", "waiting at end"),
    ("p50_response_s", "p50 (s)"),
    ("p99_response_s", "p99 (s)"),
    ("p99_response_with_unfinished_s", "p99 incl. unfinished (s)"),
    ("in_queue", "queued at end"),
    ("overload_s", "overload (host·s)"),
    ("overload_with_headroom_elsewhere_s", "overload, headroom elsewhere (host·s)"),
    ("lost_goodput_pct", "goodput lost to collapse (%)"),
    ("served_over_limit_s", "served over limit, Dom0 (host·s)"),
    ("dispatched_over_limit", "jobs sent over a limit, by the policy's figures"),
)


def run_live(policies: list[str], duration_s: float, seed: int, console: Console) -> dict[str, Any]:
    """One demo run per policy; the summaries keyed by policy name, plus the run's settings."""
    results: dict[str, Any] = {}
    for policy in policies:
        console.print(f"[bold]live comparison:[/] {policy}, {duration_s:.0f} s, seed {seed}")
        started = time.monotonic()
        summary = run_demo(
            DemoOptions(duration_s=duration_s, policy=policy, live=False, seed=seed),
            console,
        )
        summary["wall_s"] = round(time.monotonic() - started, 1)
        results[policy] = summary
    return {"duration_s": duration_s, "seed": seed, "policies": results}


def markdown_table(report: dict[str, Any]) -> str:
    policies = report["policies"]
    header = "| policy | " + " | ".join(title for _, title in FIELDS) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in FIELDS) + " |"
    rows = [
        f"| {name} | " + " | ".join(str(summary.get(key)) for key, _ in FIELDS) + " |"
        for name, summary in policies.items()
    ]
    return "\n".join([header, rule, *rows])


def write_report(report: dict[str, Any], target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    as_json = target / "results.json"
    as_json.write_text(json.dumps(report, indent=2) + "\n")  # policies in the order they ran
    table = target / "results.md"
    table.write_text(
        f"Live demo fleet, {report['duration_s']:.0f} s per policy, seed {report['seed']} "
        f"(`vmlb bench live`)\n\n{markdown_table(report)}\n"
    )
    return [as_json, table]
