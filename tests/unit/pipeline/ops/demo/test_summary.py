import pytest

from pipeline.events import (
    CandidateView,
    DeadLetter,
    DecisionOutcome,
    DispatchDecision,
    IoCounters,
    IoSample,
    JobCompletion,
)
from pipeline.ops.demo.summary import (
    channel_load,
    dispatched_over_limit,
    overload,
    quantile,
    served_rates,
    summarize,
)


def done(job_id: str, submitted_at: float, finished_at: float) -> JobCompletion:
    return JobCompletion(
        job_id=job_id,
        job_type="io",
        vm_id="v",
        host_id="h1",
        submitted_at=submitted_at,
        dispatched_at=submitted_at,
        started_at=submitted_at,
        finished_at=finished_at,
        outcome="succeeded",
    )


def sample(host: str, t: float, io_ops: int) -> IoSample:
    return IoSample(
        host_id=host,
        vm_id=f"{host}-v",
        sampled_at=t,
        interval_s=1.0,
        io_ops=io_ops,
        counters=IoCounters(),
    )


def test_every_submitted_job_lands_in_exactly_one_bucket():
    letter = DeadLetter(
        source_topic="jobs", reason="deadline", stage="dispatcher", dead_lettered_at=1, job_id="d"
    )
    summary = summarize(
        submitted=["a", "b", "c", "d", "w", "q", "x"],
        completions=[done("a", 0, 1), done("b", 0, 3), done("c", 0, 2), done("c", 0, 2)],
        dead_letters=[letter],
        waiting=["w"],
        queued=["a", "q"],
        samples=[],
        limits={},
    )
    assert summary["completed"] == 3
    assert summary["dead_lettered"] == 1
    assert summary["waiting"] == 1
    assert summary["in_queue"] == 1
    assert summary["lost"] == 1 and summary["lost_job_ids"] == ["x"]
    assert summary["duplicate_completions"] == 1
    assert summary["p50_response_s"] == 2.0
    assert summary["p99_response_s"] == 3.0


def test_unfinished_jobs_count_with_their_age_in_the_p99_over_every_job():
    summary = summarize(
        submitted=["a", "b", "w", "q"],
        completions=[done("a", 0, 1), done("b", 0, 2)],
        dead_letters=[],
        waiting=["w"],
        queued=["q"],
        samples=[],
        limits={},
        submitted_at={"a": 0.0, "b": 0.0, "w": 5.0, "q": 1.0},
        ended_at=30.0,
    )
    assert summary["p99_response_s"] == 2.0  # completed jobs only
    assert summary["p99_response_with_unfinished_s"] == 29.0  # q, still queued, is 29 s old


def test_quantiles_nearest_rank():
    assert quantile([], 0.5) is None
    assert quantile([3, 1, 2], 0.5) == 2
    assert quantile(list(range(1, 101)), 0.99) == 99


def test_overload_counts_seconds_above_limit_and_long_overloads_beside_headroom():
    # h1 is over its limit for 12 s; h2 has room for the first 8 s only.
    samples = [sample("h1", t, 1200) for t in range(12)] + [sample("h2", t, 100) for t in range(8)]
    samples += [sample("h2", t, 950) for t in range(8, 12)]
    above, wasted = overload(served_rates(samples)[0], {"h1": 1000, "h2": 1000})
    assert above == {"h1": pytest.approx(12.0), "h2": 0.0}
    # The first 5 s of the streak are tolerated; seconds 6..8 had room elsewhere: 3 s wasted.
    assert wasted == pytest.approx(3.0)


def test_short_overloads_are_tolerated_and_streaks_restart():
    rates = [1200, 1200, 900, 1200, 1200, 1200, 1200, 1200, 1200]  # a dip breaks the streak
    samples = [sample("h1", t, r) for t, r in enumerate(rates)] + [
        sample("h2", t, 0) for t in range(9)
    ]
    above, wasted = overload(served_rates(samples)[0], {"h1": 1000, "h2": 1000})
    assert above["h1"] == pytest.approx(8.0)
    assert wasted == pytest.approx(1.0)  # only the 6th second of the second streak


def channel_rows(host: str, asked_per_s: list[float], collapse_lost_per_s: float = 0.0):
    """A host's `channel.jsonl`: cumulative counters, one row a second (at t = 100.3 + i)."""
    rows, asked, lost = [], 0.0, 0.0
    for i, rate in enumerate([0.0, *asked_per_s]):
        asked += rate
        lost += collapse_lost_per_s if rate else 0.0
        rows.append(
            {
                "host_id": host,
                "at": 100.3 + i,
                "incarnation": "one",
                "asked_ops": asked,
                "served_ops": asked - lost,
                "lost_ops": lost,
            }
        )
    return rows


def summarize_io(
    samples: list[IoSample], limits: dict[str, float], channel: list[dict] | None = None
) -> dict:
    """The summary of a run that submitted no job: only its I/O."""
    return summarize(
        submitted=[],
        completions=[],
        dead_letters=[],
        waiting=[],
        queued=[],
        samples=samples,
        limits=limits,
        channel=channel,
    )


def test_overload_is_what_the_channel_was_asked_not_what_dom0_saw_served():
    # A collapsing host: asked 1.4x its limit for 10 s, it served less than the limit (what
    # Dom0's samples show), so the served rate alone calls the worst overload none.
    rows = channel_rows("h1", [1400.0] * 10 + [500.0] * 5, collapse_lost_per_s=120.0)
    rows += channel_rows("h2", [100.0] * 15)
    served = [sample("h1", t, 900) for t in range(15)] + [sample("h2", t, 100) for t in range(15)]
    summary = summarize_io(served, {"h1": 1000.0, "h2": 1000.0}, rows)
    assert summary["overload_source"] == "channel asked"
    assert summary["overload_s"] == pytest.approx(10.0)
    assert summary["overload_s_by_host"] == {"h1": pytest.approx(10.0), "h2": 0.0}
    assert summary["served_over_limit_s"] == 0.0
    # Past the first 5 s of the streak h2 had room: 5 s of overload beside headroom.
    assert summary["overload_with_headroom_elsewhere_s"] == pytest.approx(5.0)
    assert summary["lost_goodput_ops"] == round(120.0 * 15)
    assert summary["lost_goodput_pct"] == pytest.approx(100 * 1800 / (14000 + 2500 + 1500))


def test_without_channel_records_overload_is_dom0s_served_rate():
    summary = summarize_io([sample("h1", t, 1200) for t in range(3)], {"h1": 1000.0})
    assert summary["overload_source"] == "dom0 served"
    assert summary["overload_s"] == summary["served_over_limit_s"] == pytest.approx(3.0)
    assert summary["lost_goodput_pct"] is None


def test_a_restarted_host_or_a_bad_row_starts_its_accounting_afresh():
    first = channel_rows("h1", [2000.0] * 3)
    again = [
        dict(row, incarnation="two", at=row["at"] + 10) for row in channel_rows("h1", [2000.0] * 2)
    ]
    junk = [
        {"host_id": "h1"},
        {"host_id": "h1", "at": "soon", "asked_ops": 1, "served_ops": 1, "lost_ops": 0},
    ]
    load = channel_load([*first, *junk, *again])
    # 3 steps, then the new incarnation's first row only starts it, then 2 steps: the counter
    # falling from 6000 to 0 is never read as a step.
    assert sum(1 for by_host in load.asked.values() if by_host["h1"] > 1000) == 5
    assert load.asked_ops == pytest.approx(5 * 2000.0)


def decided(job_id: str, vm_id: str | None, total: float, job_rate: float | None, limit=1000.0):
    host_id = None if vm_id is None else vm_id.split("-")[0]
    candidates = (
        []
        if vm_id is None
        else [
            CandidateView(
                vm_id=vm_id,
                host_id=host_id,
                total_io_ops_per_s=total,
                eligible=True,
                limit_ops_per_s=limit,
                job_io_ops_per_s=job_rate,
            )
        ]
    )
    return DispatchDecision(
        job_id=job_id,
        job_type="t",
        decided_at=1.0,
        policy="io-aware",
        outcome=DecisionOutcome.DISPATCHED if vm_id else DecisionOutcome.WAITING,
        vm_id=vm_id,
        host_id=host_id,
        reason="test",
        candidates=candidates,
    )


def test_a_job_sent_over_a_limit_is_one_whose_own_figures_take_its_host_past_it():
    decisions = [
        decided("j1", "h1-a", total=700.0, job_rate=300.0),  # 1000: at the limit, not over
        decided("j2", "h1-a", total=701.0, job_rate=300.0),  # over
        decided("j3", "h2-a", total=1200.0, job_rate=None),  # over with nothing added
        decided("j4", None, total=0.0, job_rate=None),  # waiting: not a dispatch
        decided("j5", "h2-a", total=1200.0, job_rate=0.0),  # over, then sent again under it:
        decided("j5", "h1-a", total=0.0, job_rate=300.0),  # its last dispatch counts
        decided("j6", "h2-a", total=5e3, job_rate=1.0, limit=None),  # no limit: never over
    ]
    assert dispatched_over_limit(decisions) == {"h1": 1, "h2": 1}
    summary = summarize_io([], {})
    assert summary["dispatched_over_limit"] is None  # no decisions read: unknown, not 0
