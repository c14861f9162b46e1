import json

import pytest

from pipeline.errors import EventError
from pipeline.events import (
    EVENT_TYPES,
    DeadLetter,
    DispatchDecision,
    IoCounters,
    IoSample,
    JobCompletion,
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


def test_decision_is_keyed_by_chosen_vm_else_job():
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
    assert chosen.key() == b"vm7"
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
