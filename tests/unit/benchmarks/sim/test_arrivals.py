"""Arrivals with submitters: who submits each job, its priority, its stretch and mix, seeded."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.sim.arrivals import generate
from benchmarks.sim.scenario import load_scenario, parse_scenario
from pipeline.events import DEFAULT_PRIORITY

TINY = load_scenario("tiny")
FLOOD = load_scenario("fairness-flood")


def with_submitters(base: dict, submitters: list[dict], drop_arrivals: bool = False) -> dict:
    data = base | {"submitters": submitters}
    if drop_arrivals:
        data.pop("arrivals")
    return data


def test_without_submitters_jobs_are_anonymous_at_the_default_priority() -> None:
    jobs = generate(TINY)
    assert jobs and {(job.submitter, job.priority) for job in jobs} == {(None, DEFAULT_PRIORITY)}


def test_one_submitter_taking_every_job_changes_only_the_names() -> None:
    data = with_submitters(TINY.model_dump(mode="json"), [{"name": "all", "share": 1.0}])
    named = generate(parse_scenario(data, "t"))
    anonymous = generate(TINY)
    assert [(j.at_s, j.job_type, j.cpu_s, j.io_ops) for j in named] == [
        (j.at_s, j.job_type, j.cpu_s, j.io_ops) for j in anonymous
    ]
    assert {job.submitter for job in named} == {"all"}


def test_shares_deal_the_scenarios_jobs_and_carry_each_ones_priority() -> None:
    data = TINY.model_dump(mode="json") | {"duration_s": 200}
    data = with_submitters(
        data, [{"name": "big", "share": 0.75}, {"name": "small", "share": 0.25, "priority": 9}]
    )
    jobs = generate(parse_scenario(data, "t"))
    counts = Counter(job.submitter for job in jobs)
    assert counts["big"] + counts["small"] == len(jobs)
    assert counts["small"] / len(jobs) == pytest.approx(0.25, abs=0.03)
    assert {job.priority for job in jobs if job.submitter == "small"} == {9}
    assert {job.priority for job in jobs if job.submitter == "big"} == {DEFAULT_PRIORITY}


def test_own_arrivals_keep_to_their_stretch_and_do_not_move_the_others() -> None:
    jobs = generate(FLOOD)
    flood = [job for job in jobs if job.submitter == "flooder"]
    assert flood and all(20.0 <= job.at_s < 50.0 for job in flood)
    assert [job.at_s for job in jobs] == sorted(job.at_s for job in jobs)
    # 300% of 8000 ops/s in jobs of 170 ops on average, for 30 s: about 4235 jobs.
    assert len(flood) == pytest.approx(3.0 * 8000 / 170 * 30, rel=0.05)
    data = FLOOD.model_dump(mode="json", exclude_none=True)
    data["submitters"][1]["to_s"] = 30  # a shorter flood: the victim's jobs are the same
    shorter = generate(parse_scenario(data, "t"))
    victim = [job for job in jobs if job.submitter == "victim"]
    assert victim == [job for job in shorter if job.submitter == "victim"]
    assert len([job for job in shorter if job.submitter == "flooder"]) < len(flood)


def test_a_submitters_mix_decides_its_job_types() -> None:
    data = FLOOD.model_dump(mode="json", exclude_none=True)
    data["submitters"][0]["job_types"] = {"light": 1}
    jobs = generate(parse_scenario(data, "t"))
    assert {job.job_type for job in jobs if job.submitter == "victim"} == {"light"}
    assert {job.job_type for job in jobs if job.submitter == "flooder"} == {"heavy", "light"}


def test_arrivals_are_seeded() -> None:
    assert generate(FLOOD) == generate(FLOOD)
    assert generate(FLOOD) != generate(FLOOD.model_copy(update={"seed": FLOOD.seed + 1}))
