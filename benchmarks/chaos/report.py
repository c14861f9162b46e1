"""The chaos report: each scenario's runs summed into one row, as a table and as JSON.

Counts are summed over a scenario's runs. Times are over every fault of every run: the median
and the worst (with a handful of faults per run, the worst is the p99 over faults). `never`
means a fault after which the backlog did not come back to its level before the fault, or a
Dom0 or guest that never delivered again, before the drain ended. A defect is any lost,
stranded, run-on-two-VMs, queued-without-decision or forwarded-twice job: `defects()` lists
them, and `vmlb bench chaos` exits 1 if there is one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.chaos.accounting import quantile

#: (result key, column title), summed over runs.
COUNTS = (
    ("submitted", "submitted"),
    ("completed", "completed"),
    ("lost", "lost"),
    ("ran_on_two_vms", "ran on two VMs"),
    ("end_published_twice", "end published twice (guest)"),
    ("completion_forwarded_twice", "completion forwarded twice"),
    ("stranded", "stranded"),
    ("queued_without_decision", "queued without decision"),
    ("dead_lettered", "dead-lettered"),
    ("moved", "moved"),
)
DEFECTS = (
    "lost",
    "ran_on_two_vms",
    "completion_forwarded_twice",
    "stranded",
    "queued_without_decision",
)
#: (fault time key, column title): median / worst over faults.
TIMES = (
    ("first_dispatch_s", "first dispatch after fault (median / max s)"),
    ("backlog_recovery_s", "backlog recovered (median / max s)"),
    ("dom0s_back_s", "Dom0s delivering again (max s)"),
    ("guests_back_s", "guests delivering again (max s)"),
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario (in the order first run): summed counts, p99 and fault times."""
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        row = rows.setdefault(
            run["scenario"],
            {"runs": 0, **{key: 0 for key, _ in COUNTS}, "p99_response_s": None, "faults": 0},
        )
        row["runs"] += 1
        for key, _ in COUNTS:
            row[key] += run[key]
        if run["p99_response_s"] is not None:
            row["p99_response_s"] = max(row["p99_response_s"] or 0.0, run["p99_response_s"])
        row["faults"] += len(run["faults"])
        row.setdefault("_times", []).extend(run["faults"])
        row.setdefault("unplanned_worker_exits", []).extend(run["unplanned_worker_exits"])
        row.setdefault("drains", []).append(run["drain"])
    for row in rows.values():
        faults = row.pop("_times", [])
        for key, _ in TIMES:
            relevant = faults
            if key in _BROKER_ONLY:
                relevant = [f for f in faults if f["kind"].startswith("broker")]
                if key == "guests_back_s":  # not after a fault that left no guest a job to run
                    relevant = [f for f in relevant if f.get("guests_with_work", 1)]
            elif key == "first_dispatch_s":  # not after a fault that left nothing to dispatch
                relevant = [f for f in faults if f.get("left_to_dispatch", 1)]
            row[key] = _spread([f[key] for f in relevant])
    return rows


#: Measured only after broker faults.
_BROKER_ONLY = ("dom0s_back_s", "guests_back_s")


def _spread(values: list[float | None]) -> dict[str, Any] | None:
    """Median and worst of the faults' times; None (a time never reached) counted apart."""
    if not values:
        return None
    reached = [v for v in values if v is not None]
    return {
        "median": quantile(reached, 0.5),
        "max": max(reached) if reached else None,
        "faults": len(values),
        "never": len(values) - len(reached),
    }


def defects(rows: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{name}: {row[key]} {key.replace('_', ' ')}"
        for name, row in rows.items()
        for key in DEFECTS
        if row[key]
    ]


def _time_cell(spread: dict[str, Any] | None, key: str) -> str:
    if spread is None:
        return "-"
    if spread["max"] is None:
        return "never"
    never = f" ({spread['never']} never)" if spread["never"] else ""
    if key in _BROKER_ONLY:
        return f"{spread['max']:.1f}{never}"
    return f"{spread['median']:.1f} / {spread['max']:.1f}{never}"


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    titles = ["scenario", "runs", *(t for _, t in COUNTS), "p99 response (s)", "faults"]
    titles += [t for _, t in TIMES]
    lines = ["| " + " | ".join(titles) + " |", "| --- |" + " ---: |" * (len(titles) - 1)]
    for name, row in rows.items():
        p99 = row["p99_response_s"]
        cells = [name, str(row["runs"]), *(str(row[key]) for key, _ in COUNTS)]
        cells += [f"{p99:.2f}" if p99 is not None else "-", str(row["faults"])]
        cells += [_time_cell(row[key], key) for key, _ in TIMES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    runs: list[dict[str, Any]],
    target: Path,
    header: str,
    failed: list[dict[str, Any]] | None = None,
) -> list[Path]:
    """results.json (every run, and the runs that failed) and results.md (the table)."""
    target.mkdir(parents=True, exist_ok=True)
    rows = summarize(runs)
    failed = failed or []
    as_json = target / "results.json"
    as_json.write_text(
        json.dumps({"scenarios": rows, "runs": runs, "failed_runs": failed}, indent=2) + "\n"
    )
    lines = [f"- {r['scenario']} seed {r['seed']}: run failed: {r['error']}" for r in failed]
    failures = "\n\nRuns that failed:\n\n" + "\n".join(lines) if lines else ""
    table = target / "results.md"
    table.write_text(f"{header}\n\n{markdown_table(rows)}{failures}\n")
    return [as_json, table]


def evidence(runs: Iterable[dict[str, Any]]) -> list[str]:
    """One line per defect found in a run, with the jobs' ids and what the topics said."""
    lines = []
    for run in runs:
        for defect, items in run["evidence"].items():
            if defect in DEFECTS or defect == "end_published_twice":
                lines.append(
                    f"{run['scenario']} seed {run['seed']} ({run['topic_prefix']}): "
                    f"{defect}: {json.dumps(items[:3])}"
                )
    return lines
