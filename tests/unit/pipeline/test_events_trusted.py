"""`trusted()`: the same instance as pydantic's `model_construct`, without its per-call cost;
`trusted_bytes()`: its bytes without the instance."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from pipeline.events import (
    CandidateView,
    DecisionOutcome,
    DispatchDecision,
    HostSample,
    JobCompletion,
    JobState,
    JobStatus,
    JobSubmission,
    QueuedJob,
    StatusWriter,
    VmState,
    trusted,
    trusted_bytes,
)

NOW = 1_800_000_000.0
JOB = JobSubmission(job_id="j1", job_type="io", submitted_at=NOW, payload={"n": 1})

CASES: list[tuple[type[BaseModel], dict]] = [
    (
        JobStatus,
        {"job_id": "j1", "state": JobState.WAITING, "at": NOW, "writer": StatusWriter.DISPATCHER,
         "job": JOB, "reason": "no host has room"},
    ),
    (
        DispatchDecision,
        {"job_id": "j1", "job_type": "io", "decided_at": NOW, "policy": "io-aware",
         "outcome": DecisionOutcome.DISPATCHED, "vm_id": "a1", "host_id": "h1", "reason": "idle"},
    ),
    (
        QueuedJob,
        {"job_id": "j1", "job_type": "io", "vm_id": "a1", "host_id": "h1", "submitted_at": NOW,
         "dispatched_at": NOW, "policy": "io-aware"},
    ),
    (CandidateView, {"vm_id": "a1", "host_id": "h1", "total_io_ops_per_s": 5.0, "eligible": True}),
]  # fmt: skip


@pytest.mark.parametrize(("model", "values"), CASES, ids=[m.__name__ for m, _ in CASES])
def test_trusted_builds_what_model_construct_builds(model, values):
    ours, theirs = trusted(model, **values), model.model_construct(**values)
    assert ours == theirs
    assert ours.model_fields_set == theirs.model_fields_set
    assert ours.model_dump_json() == theirs.model_dump_json()
    assert list(vars(ours)) == list(vars(theirs))  # field order, for every serialiser
    # A valid event reads back as itself.
    assert model.model_validate_json(ours.model_dump_json(exclude_none=True)) == ours


def test_each_instance_gets_its_own_default_containers():
    first = trusted(JobStatus, **CASES[0][1])
    second = trusted(JobStatus, **CASES[0][1])
    assert first.funnel == [] and first.funnel is not second.funnel
    assert first.errors is not second.errors


def test_a_mutable_plain_default_is_copied_not_shared():
    class Box(BaseModel):
        items: list[int] = [1]
        tags: dict[str, int] = Field(default_factory=dict)

    one, two = trusted(Box), trusted(Box)
    assert one.items == [1] and one.items is not two.items
    assert one.tags == {} and one.tags is not two.tags


def test_unknown_or_missing_fields_are_the_caller_s_error():
    with pytest.raises(TypeError, match="no field"):
        trusted(CandidateView, vm_id="a1", host_id="h1", total_io_ops_per_s=1.0, nope=1)
    with pytest.raises(TypeError, match="required field 'host_id'"):
        trusted(CandidateView, vm_id="a1", total_io_ops_per_s=1.0)


def test_trusted_bytes_are_the_bytes_of_the_trusted_event():
    values = {"vm_id": "vm-a1", "host_id": "host-a", "io_ops_per_s": 1180.5, "updated_at": 1.5}
    assert trusted_bytes(VmState, **values) == trusted(VmState, **values).to_bytes()
    assert trusted_bytes(VmState, **values) == VmState(**values).to_bytes()
    with pytest.raises(TypeError, match="required field 'updated_at'"):
        trusted_bytes(VmState, vm_id="vm-a1")
    with pytest.raises(TypeError, match="no field"):
        trusted_bytes(VmState, vm_id="vm-a1", updated_at=1.0, nonsense=1)


def test_trusted_bytes_refuses_events_with_more_than_plain_fields():
    for model in (HostSample, JobCompletion):  # nested models, lists, enums
        with pytest.raises(TypeError, match="plain fields only"):
            trusted_bytes(model, host_id="h")
