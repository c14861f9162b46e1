"""Fairness across submitters: each submitter's times with everyone, against its times alone.

For a scenario with `submitters`, under each policy, three runs of the very same jobs:

- `fair`: everyone, the dispatcher's waiting jobs in `WaitingQueue`'s order (priority, then the
  submitters' turns, then age), as live;
- `fifo`: everyone, fair queueing off (every job waits as one submitter: oldest first within a
  priority), the baseline that shows what the turns buy;
- `alone`: each submitter's own jobs only (the others' removed, nothing else changed), what it
  would see on its own.

A submitter's ratio is its p99 response with everyone over its p99 response alone (and the same
for FIFO); its waits (submit to dispatch) are shown beside, as their p99 alone is often ~0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.sim.arrivals import Arrival
from benchmarks.sim.engine import run
from benchmarks.sim.report import table
from benchmarks.sim.results import RunResult, SubmitterResult
from benchmarks.sim.scenario import Scenario
from pipeline.dispatch.book import ANONYMOUS


@dataclass(frozen=True, slots=True)
class Fairness:
    """One submitter under one policy: alone, with everyone taking turns, with everyone FIFO."""

    policy: str
    submitter: str
    alone: SubmitterResult
    fair: SubmitterResult
    fifo: SubmitterResult

    @property
    def fair_ratio(self) -> float:
        """p99 response with everyone (fair turns) over p99 response alone."""
        return _ratio(self.fair.p99_response_s, self.alone.p99_response_s)

    @property
    def fifo_ratio(self) -> float:
        """p99 response with everyone (FIFO) over p99 response alone."""
        return _ratio(self.fifo.p99_response_s, self.alone.p99_response_s)

    def row(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "submitter": self.submitter,
            "jobs": self.alone.submitted,
            "alone_p50_response_s": self.alone.p50_response_s,
            "alone_p99_response_s": self.alone.p99_response_s,
            "fair_p50_response_s": self.fair.p50_response_s,
            "fair_p99_response_s": self.fair.p99_response_s,
            "fifo_p50_response_s": self.fifo.p50_response_s,
            "fifo_p99_response_s": self.fifo.p99_response_s,
            "fair_ratio": _finite(self.fair_ratio),
            "fifo_ratio": _finite(self.fifo_ratio),
            "alone_p99_wait_s": self.alone.p99_wait_s,
            "fair_p99_wait_s": self.fair.p99_wait_s,
            "fifo_p99_wait_s": self.fifo.p99_wait_s,
        }


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("policy", "policy", "{}"),
    ("submitter", "submitter", "{}"),
    ("jobs", "jobs", "{}"),
    ("alone_p50_response_s", "alone p50 (s)", "{:.3f}"),
    ("alone_p99_response_s", "alone p99 (s)", "{:.3f}"),
    ("fair_p50_response_s", "fair p50 (s)", "{:.3f}"),
    ("fair_p99_response_s", "fair p99 (s)", "{:.3f}"),
    ("fifo_p50_response_s", "FIFO p50 (s)", "{:.3f}"),
    ("fifo_p99_response_s", "FIFO p99 (s)", "{:.3f}"),
    ("fair_ratio", "fair p99 / alone", "{}"),
    ("fifo_ratio", "FIFO p99 / alone", "{}"),
    ("alone_p99_wait_s", "wait p99 alone (s)", "{:.3f}"),
    ("fair_p99_wait_s", "wait p99 fair (s)", "{:.3f}"),
    ("fifo_p99_wait_s", "wait p99 FIFO (s)", "{:.3f}"),
)


def _ratio(with_others: float, alone: float) -> float:
    return with_others / alone if alone > 0 else math.inf


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value  # JSON has no infinity


def without_fair_queueing(scenario: Scenario) -> Scenario:
    dispatcher = scenario.dispatcher.model_copy(update={"fair_queueing": False})
    return scenario.model_copy(update={"dispatcher": dispatcher})


def of_submitter(arrivals: Sequence[Arrival], name: str) -> list[Arrival]:
    """The jobs `name` submits, in their order, the others' removed."""
    return [job for job in arrivals if (job.submitter or ANONYMOUS) == name]


def compare(
    scenario: Scenario,
    policies: Sequence[str],
    arrivals: list[Arrival],
    together: dict[str, RunResult] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Fairness]:
    """Every submitter of `scenario` under each policy: alone, fair, FIFO (see the module).

    `together` may hold the fair runs already made (by policy name) over these `arrivals`.
    """
    if not scenario.submitters:
        raise ValueError(f"scenario {scenario.name}: no submitters to compare")
    say = progress or (lambda _: None)
    fifo_scenario = without_fair_queueing(scenario)
    names = [submitter.name for submitter in scenario.submitters]
    rows = []
    for policy in policies:
        fair = (together or {}).get(policy)
        if fair is None:
            say(f"{policy}: everyone, fair turns")
            fair = run(scenario, policy, arrivals)
        say(f"{policy}: everyone, FIFO")
        fifo = run(fifo_scenario, policy, arrivals)
        for name in names:
            say(f"{policy}: {name} alone")
            alone = run(scenario, policy, of_submitter(arrivals, name))
            rows.append(
                Fairness(
                    policy=policy,
                    submitter=name,
                    alone=alone.submitters[name],
                    fair=fair.submitters[name],
                    fifo=fifo.submitters[name],
                )
            )
    return rows


def fairness_table(rows: Sequence[Fairness]) -> str:
    shown = []
    for row in rows:
        data = row.row()
        for ratio in ("fair_ratio", "fifo_ratio"):
            data[ratio] = "-" if data[ratio] is None else f"{data[ratio]:.2f}"
        shown.append(data)
    return table(COLUMNS, shown)
