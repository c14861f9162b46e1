import hashlib
import json

import pytest

from pipeline.errors import EventError
from pipeline.events import (
    EVENT_TYPES,
    MAX_PAYLOAD_BYTES,
    CandidateView,
    DeadLetter,
    DispatchDecision,
    IoCounters,
    IoSample,
    JobCompletion,
    JobControl,
    JobStatus,
    JobSubmission,
    payload_text,
)


def test_minimal_submission_is_one_json_line_with_only_the_job_type():
    job = JobSubmission.from_bytes(b'{"job_type": "io-heavy"}')
    assert job.job_type == "io-heavy"
    assert job.job_id is None
    assert job.payload == {}
    assert job.key() is None


def test_submission_round_trips_and_is_keyed_by_job_id():
    job = JobSubmission(
        job_id="j-1", job_type="cpu-heavy", payload={"n": 3}, submitted_at=10.0, deadline_s=5
    )
    again = JobSubmission.from_bytes(job.to_bytes())
    assert again == job
    assert job.key() == b"j-1"
    assert job.deadline_at == 15.0


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (b'{"job_typ": "x"}', ["job_type", "job_typ"]),
        (b'{"job_type": "has space"}', ["job_type"]),
        (b'{"job_type": "x", "deadline_s": -1}', ["deadline_s"]),
        (b'{"job_type": "x", "schema_version": 2}', ["schema_version"]),
        (b"[1, 2]", ["expected a JSON object"]),
        (b"not json", ["not JSON"]),
        (b"\xff\xfe", ["not JSON"]),
    ],
)
def test_bad_submission_is_refused_naming_the_field(raw, names):
    with pytest.raises(EventError) as caught:
        JobSubmission.from_bytes(raw)
    for name in names:
        assert name in str(caught.value)


def test_empty_message_is_refused():
    with pytest.raises(EventError, match="empty message"):
        JobSubmission.from_bytes(None)


def test_io_sample_rate_and_key():
    sample = IoSample(
        host_id="h1",
        vm_id="vm1",
        sampled_at=100.0,
        interval_s=2.0,
        io_ops=500,
        counters=IoCounters(
            net_rx_packets=100, net_tx_packets=100, block_rd_reqs=200, block_wr_reqs=100
        ),
    )
    assert sample.io_ops_per_s == 250.0
    assert sample.counters.total_ops == 500
    assert sample.key() == b"vm1"


def test_completion_timeline_is_checked():
    base = dict(
        job_id="j",
        job_type="t",
        vm_id="v",
        host_id="h",
        submitted_at=1,
        dispatched_at=2,
        started_at=3,
        finished_at=5,
        outcome="succeeded",
    )
    done = JobCompletion(**base)
    assert done.response_s == 4 and done.service_s == 2
    with pytest.raises(EventError, match="finished_at is before started_at"):
        JobCompletion.from_dict({**base, "finished_at": 2})
    with pytest.raises(EventError, match="error text"):
        JobCompletion.from_dict({**base, "outcome": "failed"})


def test_decision_is_keyed_by_its_job():
    chosen = DispatchDecision(
        job_id="j",
        job_type="t",
        decided_at=1,
        policy="io-aware",
        outcome="dispatched",
        vm_id="vm7",
        host_id="h1",
        reason="headroom",
    )
    waiting = chosen.model_copy(update={"outcome": "waiting", "vm_id": None, "host_id": None})
    # Keyed by the job (and written to the job's partition): its audit trail in one place.
    assert chosen.key() == b"j"
    assert waiting.key() == b"j"


def test_dead_letter_keeps_undecodable_payload_as_base64():
    assert payload_text(b"\xff") == "base64:/w=="
    assert payload_text(b'{"a":1}') == '{"a":1}'
    letter = DeadLetter(
        source_topic="vmlb.jobs",
        source_partition=0,
        source_offset=7,
        source_key="k",
        payload="x",
        reason="bad",
        stage="dispatcher",
        dead_lettered_at=1.0,
    )
    assert json.loads(letter.to_bytes())["source_offset"] == 7
    assert letter.key() == b"k"


def test_every_event_type_is_versioned_and_frozen():
    for name, cls in EVENT_TYPES.items():
        assert "schema_version" in cls.model_fields, name
        assert cls.model_config.get("frozen"), name


# --- hostile input (issue 12) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "not JSON"),  # a RecursionError out of json.loads before
        (b'{"job_type": "io", "deadline_s": "10"}', "deadline_s"),  # no numeric strings
        (b'{"job_type": "io", "max_attempts": true}', "max_attempts"),  # no booleans for ints
        (b'{"job_type": "io", "submitted_at": Infinity}', "submitted_at"),
        (b'{"job_type": "io", "submitted_at": 1e308}', "submitted_at"),
        (b'{"job_type": "io", "deadline_s": NaN}', "deadline_s"),
        (b'{"job_type": "io", "priority": 99}', "priority"),
        (b'{"job_type": "io", "job_id": "a/b"}', "job_id"),
        (b"\xff\xfe", "not JSON"),
        (b'"just a string"', "expected a JSON object"),
    ],
)
def test_hostile_submissions_are_refused_with_an_event_error(raw, names):
    with pytest.raises(EventError, match=names):
        JobSubmission.from_bytes(raw)


def test_counts_beyond_two_to_the_53_are_refused():
    raw = json.dumps(
        {
            "host_id": "h",
            "vm_id": "v",
            "sampled_at": 1.0,
            "interval_s": 1.0,
            "io_ops": 2**64,
            "counters": {},
        }
    ).encode()
    with pytest.raises(EventError, match="io_ops"):
        IoSample.from_bytes(raw)


def test_a_message_over_the_size_limit_is_refused_before_parsing():
    huge = b'{"job_type": "io", "payload": {"x": "' + b"a" * 1_000_001 + b'"}}'
    with pytest.raises(EventError, match="over the 1000000 limit"):
        JobSubmission.from_bytes(huge)


def test_a_dead_letter_of_a_huge_message_stays_small_and_says_what_it_cut():
    huge = b"x" * 900_000
    letter = DeadLetter.of(
        "t.jobs", 0, 5, b"k" * 5000, huge, reason="r" * 10_000, stage="s", at=1.0
    )
    encoded = letter.to_bytes()
    assert len(encoded) < 100_000
    assert (letter.payload_bytes, letter.payload_truncated) == (900_000, True)
    assert letter.payload_sha256 == hashlib.sha256(huge).hexdigest()
    assert DeadLetter.from_bytes(encoded) == letter


def test_a_job_status_is_consistent_and_its_result_bounded():
    job = JobSubmission(job_id="j1", job_type="io", submitted_at=1.0)
    ok = JobStatus(
        job_id="j1", state="succeeded", at=2.0, writer="guest", job=job, vm_id="v", result={"n": 1}
    )
    assert JobStatus.from_bytes(ok.to_bytes()) == ok
    assert ok.terminal
    with pytest.raises(ValueError, match=r"job\.job_id"):
        JobStatus(job_id="j2", state="waiting", at=2.0, writer="dispatcher", job=job)
    with pytest.raises(ValueError, match="names its vm_id"):
        JobStatus(job_id="j1", state="dispatched", at=2.0, writer="dispatcher", job=job)
    with pytest.raises(ValueError, match="65536-byte limit"):
        JobStatus(
            job_id="j1",
            state="succeeded",
            at=2.0,
            writer="guest",
            job=job,
            vm_id="v",
            result={"x": "a" * 70_000},
        )


def test_a_job_payload_is_bounded_on_the_wire_and_when_built():
    big = {"x": "a" * (MAX_PAYLOAD_BYTES + 1)}
    with pytest.raises(EventError, match="262144-byte limit"):
        JobSubmission.from_bytes(json.dumps({"job_type": "io", "payload": big}).encode())
    with pytest.raises(ValueError, match="262144-byte limit"):
        JobSubmission(job_type="io", payload=big)
    fits = {"x": "a" * (MAX_PAYLOAD_BYTES - 100)}
    assert JobSubmission(job_type="io", payload=fits).payload == fits


def test_a_revoke_names_the_vm():
    with pytest.raises(ValueError, match="names the vm_id"):
        JobControl(job_id="j", action="revoke", requested_at=1.0)
    assert JobControl(job_id="j", requested_at=1.0).action == "cancel"


def test_a_decision_written_without_unknown_limits_reads_back():
    # Decisions for hosts whose limit is unknown were dead-lettered by their own writer: None
    # fields are left out on write and were required on read.
    candidate = CandidateView(vm_id="v", host_id="h", total_io_ops_per_s=1.0, eligible=True)
    decision = DispatchDecision(
        job_id="j",
        job_type="t",
        decided_at=1.0,
        policy="p",
        outcome="dispatched",
        vm_id="v",
        host_id="h",
        reason="r",
        candidates=[candidate],
    )
    assert DispatchDecision.from_bytes(decision.to_bytes()) == decision


def _pydantic_bytes(event) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


@pytest.mark.parametrize(
    "reason",
    ["idle", 'says ,"refused":{"x":1} and "candidates":[] in text', 'é \\" \n ✓', ""],
)
def test_events_encode_to_pydantic_s_own_bytes_with_candidates_encoded_once(reason):
    views = [
        CandidateView(vm_id=f"v{i}", host_id="h", total_io_ops_per_s=i / 3, eligible=i % 2 == 0,
                      rejected_by=None if i % 2 == 0 else "does not fit",
                      telemetry_age_s=0.1 * i, expected_response_s=None if i else 0.25)
        for i in range(5)
    ]  # fmt: skip
    decision = DispatchDecision(
        job_id="j", job_type="t", decided_at=1.0, policy="io-aware", outcome="dispatched",
        vm_id="v0", host_id="h", reason=reason, candidates=views,
        refused={"does not fit": 2, 'a "quoted" rule': 1},
    )  # fmt: skip
    assert decision.to_bytes() == _pydantic_bytes(decision)
    # A second decision sharing candidates (as io-aware's do) reuses their bytes: a candidate
    # is encoded once, and each decision still gets its own list.
    other = decision.model_copy(update={"candidates": views[3:] + views[:1], "refused": {}})
    assert other.to_bytes() == _pydantic_bytes(other)
    assert DispatchDecision.from_bytes(other.to_bytes()) == other
    # A new instance with other numbers is encoded as itself, never as an older one's bytes.
    changed = decision.model_copy(
        update={"candidates": [v.model_copy(update={"outstanding_jobs": 7}) for v in views]}
    )
    assert changed.to_bytes() == _pydantic_bytes(changed) != decision.to_bytes()
    for event in (
        decision.model_copy(update={"candidates": []}),
        JobSubmission(job_id="j", job_type="t", payload={"ü": [1, 2.5, None]}, submitted_at=2.0),
        JobStatus.from_bytes(JobStatus(
            job_id="j", state="waiting", at=3.0, writer="dispatcher", reason=reason,
            job=JobSubmission(job_id="j", job_type="t", submitted_at=2.0),
        ).to_bytes()),
    ):  # fmt: skip
        assert event.to_bytes() == _pydantic_bytes(event)
