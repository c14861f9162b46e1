"""Reports of several runs of one scenario: markdown tables, JSON, and PNG plots.

The tables: one row per run; and, when the scenario names submitters, one row per run and
submitter (its responses and its waits at the dispatcher).

Plots (matplotlib, Agg backend, no display needed):
- `tradeoff.png`: p99 response against overload, io-aware's strictness sweep as a curve (each
  point labelled with its hold_s), the oracle's as a dashed curve, each baseline as a point;
- `response_cdf.png`: the response-time CDF of completed jobs, one line per policy;
- `host_io_<policy>.png`: each plotted host's I/O rate over time against its limit.

Runs of a strictness sweep are labelled `<policy> hold=<s>s`; the CDF and host plots show the
policies at their own settings only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.sim.results import RunResult

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("policy", "policy", "{}"),
    ("throughput_per_s", "throughput (jobs/s)", "{:.1f}"),
    ("mean_response_s", "mean (s)", "{:.3f}"),
    ("p50_response_s", "p50 (s)", "{:.3f}"),
    ("p99_response_s", "p99 (s)", "{:.3f}"),
    ("p999_response_s", "p99.9 (s)", "{:.3f}"),
    ("overload_s", "overload (host·s)", "{:.0f}"),
    ("lost_goodput_pct", "goodput lost (%)", "{:.2f}"),
    ("demand_over_limit_s", "demand over limit (host·s)", "{:.0f}"),
    ("completed", "completed", "{}"),
    ("in_flight", "in flight at end", "{}"),
    ("waiting", "waiting at end", "{}"),
    ("expired", "expired", "{}"),
    ("lost", "lost", "{}"),
    ("decision_us", "decide() (µs)", "{:.1f}"),
)


#: The per-submitter table (scenarios with `submitters`), one row per policy and submitter.
SUBMITTER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("policy", "policy", "{}"),
    ("submitter", "submitter", "{}"),
    ("submitted", "submitted", "{}"),
    ("completed", "completed", "{}"),
    ("expired", "expired", "{}"),
    ("mean_response_s", "mean (s)", "{:.3f}"),
    ("p50_response_s", "p50 (s)", "{:.3f}"),
    ("p99_response_s", "p99 (s)", "{:.3f}"),
    ("p50_wait_s", "wait p50 (s)", "{:.3f}"),
    ("p99_wait_s", "wait p99 (s)", "{:.3f}"),
)


def as_json(results: Sequence[RunResult]) -> dict[str, Any]:
    return {result.policy: result.summary() for result in results}


def table(columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of `rows` (dicts), the first column left-aligned, the others right."""
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(columns))) + "|"
    lines = [
        "| " + " | ".join(fmt.format(row[key]) for key, _, fmt in columns) + " |" for row in rows
    ]
    return "\n".join([header, rule, *lines])


def markdown_table(results: Sequence[RunResult]) -> str:
    return table(COLUMNS, [result.summary() for result in results])


def submitter_table(results: Sequence[RunResult]) -> str:
    """Per policy and submitter: responses and waits ("" when no run names submitters)."""
    rows = [
        {"policy": result.policy, "submitter": name, **dataclasses.asdict(figures)}
        for result in results
        for name, figures in result.submitters.items()
    ]
    return table(SUBMITTER_COLUMNS, rows) if rows else ""


def write_report(results: Sequence[RunResult], out_dir: Path, plots: bool = True) -> list[Path]:
    """Write results.md, results.json and the plots into `out_dir`; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    scenario = results[0].scenario if results else "?"
    markdown = out_dir / "results.md"
    per_submitter = submitter_table(results)
    if per_submitter:
        per_submitter = f"\n## Per submitter\n\n{per_submitter}\n"
    markdown.write_text(f"# Scenario `{scenario}`\n\n{markdown_table(results)}\n{per_submitter}")
    written.append(markdown)
    data = out_dir / "results.json"
    data.write_text(json.dumps(as_json(results), indent=2, sort_keys=True) + "\n")
    written.append(data)
    if plots and results:
        own = [result for result in results if " hold=" not in result.policy]
        written.append(plot_tradeoff(results, out_dir / "tradeoff.png"))
        written.append(plot_response_cdf(own, out_dir / "response_cdf.png"))
        for result in own:
            if result.series:
                written.append(plot_host_io(result, out_dir / f"host_io_{result.policy}.png"))
    return written


def sweep_of(results: Sequence[RunResult], policy: str) -> list[RunResult]:
    """The runs of `policy`'s strictness sweep, strictest last."""
    prefix = f"{policy} hold="
    return sorted((r for r in results if r.policy.startswith(prefix)), key=lambda r: r.hold_s)


def plot_tradeoff(results: Sequence[RunResult], path: Path) -> Path:
    """p99 against overload: io-aware's curve, the oracle's, and each baseline's point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for policy, style in (("io-aware", "o-"), ("oracle", "s--")):
        curve = sweep_of(results, policy)
        if not curve:
            continue
        xs = [r.overload_s for r in curve]
        ys = [r.p99_response_s for r in curve]
        ax.plot(xs, ys, style, label=f"{policy} (hold_s sweep)", markersize=4)
        for r in curve:
            hold = "inf" if r.hold_s == float("inf") else f"{r.hold_s:g}"
            ax.annotate(hold, (r.overload_s, r.p99_response_s), fontsize=7, alpha=0.7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
    for result in results:
        if " hold=" in result.policy or result.policy == "oracle":
            continue
        marker = "*" if result.policy == "io-aware" else "x"
        ax.plot(result.overload_s, result.p99_response_s, marker, markersize=10 if marker == "*" else 8,
                label=result.policy + (" (default)" if result.policy == "io-aware" else ""))  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("overload (host·s: I/O asked per 1 s interval over the limit)")
    ax.set_ylabel("p99 response (s, log scale)")
    scenario = results[0].scenario if results else "?"
    ax.set_title(f"p99 vs overload: {scenario} (lower left is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_response_cdf(results: Sequence[RunResult], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for result in results:
        values = result.responses_s
        if not values:
            continue
        # At most ~2000 points per line: the shape, not every job.
        step = max(1, len(values) // 2000)
        xs = [*values[::step], values[-1]]
        ys = [*(min(1.0, (i * step + 1) / len(values)) for i in range(len(xs) - 1)), 1.0]
        ax.plot(xs, ys, label=result.policy)
    ax.set_xscale("log")
    ax.set_xlabel("response time (s, log scale)")
    ax.set_ylabel("fraction of completed jobs")
    ax.set_title(f"Response time CDF: {results[0].scenario}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_host_io(result: RunResult, path: Path, max_hosts: int = 16) -> Path:
    plt = _pyplot()
    hosts = list(result.series)[:max_hosts]
    cols = 4
    rows = max(1, (len(hosts) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.2 * rows), sharex=True, squeeze=False)
    for ax, host_id in zip(axes.flat, hosts, strict=False):
        points = result.series[host_id]
        ax.plot([t for t, _ in points], [v for _, v in points], linewidth=0.8)
        ax.axhline(result.limits_ops_per_s[host_id], color="red", linestyle="--", linewidth=0.8)
        ax.set_title(
            f"{host_id} (overload {result.per_host_overload_s.get(host_id, 0):.0f}s)", fontsize=8
        )
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(hosts) :]:
        ax.axis("off")
    fig.suptitle(
        f"{result.scenario}, {result.policy}: host I/O (ops/s) vs limit (red)", fontsize=10
    )
    fig.supxlabel("simulated time (s)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
