"""Submission parsing: every refusal names the field (and line); the load schedule."""

from __future__ import annotations

import itertools
import random

import pytest

from pipeline.errors import EventError
from producers.errors import SubmitError
from producers.submit import (
    LoadPlan,
    arrival_offsets_s,
    build_submission,
    parse_jobs_lines,
    parse_mix,
    parse_payload,
    pick_types,
    run_load,
)


def test_job_id_and_submitted_at_are_filled_in_unless_given() -> None:
    filled = build_submission({"job_type": "io-heavy"}, now=123.0)
    assert filled.job_id and len(filled.job_id) == 32 and filled.submitted_at == 123.0
    given = build_submission(
        {"job_type": "io-heavy", "job_id": "j-1", "submitted_at": 5.0}, now=9.0
    )
    assert (given.job_id, given.submitted_at) == ("j-1", 5.0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "job_type"),
        ({"job_type": "has space"}, "job_type"),
        ({"job_type": "x", "deadline_s": -1}, "deadline_s"),
        ({"job_type": "x", "payload": [1]}, "payload"),
        ({"job_type": "x", "job_id": ""}, "job_id"),
        ({"job_type": "x", "colour": "red"}, "colour"),
    ],
)
def test_invalid_submission_names_the_field(data: dict, field: str) -> None:
    with pytest.raises(EventError, match=field):
        build_submission(data, now=0.0)


def test_jobs_file_errors_name_the_line_and_field() -> None:
    lines = ['{"job_type": "io-heavy"}', "", "# a comment", '{"job_type": "x", "deadline_s": 0}']
    with pytest.raises(SubmitError, match=r"jobs\.jsonl: line 4: JobSubmission: deadline_s"):
        parse_jobs_lines(lines, now=0.0, source="jobs.jsonl")
    with pytest.raises(SubmitError, match="line 2: not JSON"):
        parse_jobs_lines(['{"job_type": "a"}', "{oops"], now=0.0)


def test_jobs_file_skips_blanks_and_comments() -> None:
    jobs = parse_jobs_lines(
        ['{"job_type": "a", "job_id": "1"}', "  ", "# c", '{"job_type": "b"}'], now=1.0
    )
    assert [j.job_type for j in jobs] == ["a", "b"]
    assert jobs[0].job_id == "1" and jobs[1].job_id


def test_payload_must_be_a_json_object() -> None:
    assert parse_payload('{"io_ops": 4}') == {"io_ops": 4}
    assert parse_payload(None) == {}
    with pytest.raises(SubmitError, match="--payload: expected a JSON object"):
        parse_payload("[1]")
    with pytest.raises(SubmitError, match="--payload: not JSON"):
        parse_payload("{")


def test_mix_is_normalised_and_errors_name_the_entry() -> None:
    assert parse_mix("io-heavy=1,cpu-heavy=3") == {"io-heavy": 0.25, "cpu-heavy": 0.75}
    with pytest.raises(SubmitError, match="--mix: 'io-heavy': expected JOB_TYPE=WEIGHT"):
        parse_mix("io-heavy")
    with pytest.raises(SubmitError, match="--mix: cpu: weight 'x' is not a number"):
        parse_mix("io=1,cpu=x")
    with pytest.raises(SubmitError, match="--mix: a: weight must be >= 0"):
        parse_mix("a=-1")
    with pytest.raises(SubmitError, match="job_type"):
        parse_mix("bad type=1")
    with pytest.raises(SubmitError, match="add up to 0"):
        parse_mix("a=0")


def test_constant_rate_schedule() -> None:
    assert arrival_offsets_s(4.0, 5) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_ramp_reaches_the_rate_then_holds_it() -> None:
    offsets = arrival_offsets_s(10.0, 40, ramp_s=4.0)  # 20 jobs during the ramp
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(g1 >= g2 - 1e-9 for g1, g2 in itertools.pairwise(gaps[:20]))  # speeding up
    assert offsets[20] == pytest.approx(4.0)
    assert gaps[25:] == pytest.approx([0.1] * len(gaps[25:]))


def test_bad_rate_or_ramp_is_refused() -> None:
    with pytest.raises(SubmitError, match="--rate"):
        arrival_offsets_s(0, 3)
    with pytest.raises(SubmitError, match="--ramp"):
        arrival_offsets_s(1, 3, ramp_s=-1)


def test_type_mix_follows_the_weights() -> None:
    types = pick_types({"a": 0.8, "b": 0.2}, 1000, random.Random(7))
    assert 700 < types.count("a") < 900


class RecordingSubmitter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.now = 0.0

    def submit(
        self, job_type: str, payload: object = None, deadline_s: float | None = None, **_: object
    ) -> str:
        self.calls.append((job_type, self.now))
        return f"id{len(self.calls)}"


def test_run_load_sends_on_schedule_with_an_injected_clock() -> None:
    fake = RecordingSubmitter()

    def sleep(seconds: float) -> None:
        fake.now += seconds

    ids = run_load(fake, LoadPlan(2.0, 4, {"a": 1.0}, seed=1), clock=lambda: fake.now, sleep=sleep)  # type: ignore[arg-type]
    assert ids == ["id1", "id2", "id3", "id4"]
    assert [t for _, t in fake.calls] == pytest.approx([0.0, 0.5, 1.0, 1.5])
