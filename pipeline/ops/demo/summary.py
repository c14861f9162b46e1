"""The demo's closing summary, from what the topics say happened. Pure: records in, dict out.

Every submitted job (every valid message on the jobs topic) ends in exactly one bucket:
completed, dead-lettered (with a reason), waiting (no eligible host yet), in a VM's queue
(dispatched, not yet run), unread (the dispatcher had not consumed it yet: no status record), or
lost. `lost` must be 0.

Overload (the paper's concern) is measured from the Dom0 I/O samples: per host and per sampling
interval, the VMs' summed I/O rate against the host's limit. `overload_s` is the time any host
spent above its limit; `overload_with_headroom_elsewhere_s` counts the seconds a host stayed
above its limit for long (past the first 5 s of a streak) while another host had at least 30% of
its limit free: what a good dispatcher, reacting to telemetry a few seconds old, must avoid.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.events import DeadLetter, IoSample, JobCompletion

HEADROOM_ELSEWHERE = 0.3
#: A host may pass its limit briefly (telemetry is seconds old); longer than this is a failure.
LONG_OVERLOAD_S = 5.0


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (q in 0..1), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def overload(
    samples: Iterable[IoSample], limits: Mapping[str, float]
) -> tuple[dict[str, float], float]:
    """Seconds each host spent above its limit; and of those, the seconds of long overloads
    (past the first `LONG_OVERLOAD_S` of a streak) while another host had headroom."""
    rates: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    interval_s: dict[str, float] = {}
    for sample in samples:
        rates[sample.interval_index][sample.host_id] += sample.io_ops_per_s
        interval_s[sample.host_id] = sample.interval_s
    above: dict[str, float] = {host: 0.0 for host in limits}
    streak_s: dict[str, float] = {host: 0.0 for host in limits}
    wasted_s = 0.0
    for interval in sorted(rates):
        by_host = rates[interval]
        roomy = {h for h in limits if by_host.get(h, 0.0) < (1 - HEADROOM_ELSEWHERE) * limits[h]}
        for host in limits:
            if by_host.get(host, 0.0) <= limits[host]:
                streak_s[host] = 0.0
                continue
            seconds = interval_s.get(host, 1.0)
            above[host] += seconds
            streak_s[host] += seconds
            if streak_s[host] > LONG_OVERLOAD_S and roomy - {host}:
                wasted_s += seconds
    return above, wasted_s


def summarize(
    submitted: Iterable[str],
    completions: Iterable[JobCompletion],
    dead_letters: Iterable[DeadLetter],
    waiting: Iterable[str],
    queued: Iterable[str],
    samples: Iterable[IoSample],
    limits: Mapping[str, float],
    submitted_at: Mapping[str, float] | None = None,
    ended_at: float | None = None,
    unread: Iterable[str] = (),
) -> dict[str, Any]:
    """The run's buckets, response times and overload.

    With `submitted_at` (job id -> submission time) and `ended_at`, also the p99 over *every*
    submitted job, a job not finished by `ended_at` counting with its age then (a lower bound,
    as in the simulator): a policy that leaves its slowest jobs queued cannot look fast.
    """
    submitted_ids = set(submitted)
    first_completion: dict[str, JobCompletion] = {}
    duplicates = 0
    for done in completions:
        if done.job_id in first_completion:
            duplicates += 1
        else:
            first_completion[done.job_id] = done
    completed = submitted_ids & set(first_completion)
    dead = (submitted_ids & {d.job_id for d in dead_letters if d.job_id}) - completed
    waiting_ids = (submitted_ids & set(waiting)) - completed - dead
    in_queue = (submitted_ids & set(queued)) - completed - dead - waiting_ids
    not_read = (submitted_ids & set(unread)) - completed - dead - waiting_ids - in_queue
    lost = submitted_ids - completed - dead - waiting_ids - in_queue - not_read
    responses = [first_completion[j].response_s for j in completed]
    above, wasted_s = overload(samples, limits)
    p50, p99 = quantile(responses, 0.5), quantile(responses, 0.99)
    p99_all = None
    if submitted_at is not None and ended_at is not None:
        unfinished = (waiting_ids | in_queue | not_read | lost) & set(submitted_at)
        ages = [max(0.0, ended_at - submitted_at[j]) for j in unfinished]
        p99_all = quantile(responses + ages, 0.99)
    return {
        "submitted": len(submitted_ids),
        "completed": len(completed),
        "waiting": len(waiting_ids),
        "in_queue": len(in_queue),
        "dead_lettered": len(dead),
        "unread": len(not_read),
        "lost": len(lost),
        "duplicate_completions": duplicates,
        "p50_response_s": round(p50, 3) if p50 is not None else None,
        "p99_response_s": round(p99, 3) if p99 is not None else None,
        "p99_response_with_unfinished_s": round(p99_all, 3) if p99_all is not None else None,
        "overload_s": round(sum(above.values()), 1),
        "overload_s_by_host": {host: round(s, 1) for host, s in sorted(above.items())},
        "overload_with_headroom_elsewhere_s": round(wasted_s, 1),
        "lost_job_ids": sorted(lost)[:20],
    }
