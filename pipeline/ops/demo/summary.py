"""The demo's closing summary, from what the topics say happened. Pure: records in, dict out.

Every submitted job (every valid message on the jobs topic) ends in exactly one bucket:
completed, dead-lettered (with a reason), waiting (no eligible host yet), in a VM's queue
(dispatched, not yet run), unread (the dispatcher had not consumed it yet: no status record), or
lost. `lost` must be 0.

Overload (the paper's concern), one definition for the simulator and the live demo
(`benchmarks.sim.fleet`): a host is over its limit for a sampling interval (1 s) when the I/O its
guests *asked* of it in that interval, as a rate, exceeds its limit. The emulated hosts record
what their channel was asked, served and lost to collapse every second (`channel.jsonl`,
`producers.emulated.host`): from those, `overload_s` (host·s asked over the limit) and the
goodput lost to collapse. Asked, not served: a collapsing channel serves *less* than its limit
however far it is overloaded (asked 1.4x its limit, the demo's host serves 0.9x of it), so the
served rate Dom0 reports calls the worst overload none. That figure is kept as
`served_over_limit_s` (from the Dom0 samples on the topics, what an operator's meter shows);
without the channel's records (hosts that are not the demo's own) it is all there is, and
`overload_source` says which one `overload_s` is.

`overload_with_headroom_elsewhere_s` counts the seconds a host stayed above its limit for long
(past the first 5 s of a streak) while another host had at least 30% of its limit free: what a
good dispatcher, reacting to telemetry a few seconds old, must avoid.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.events import DeadLetter, DecisionOutcome, DispatchDecision, IoSample, JobCompletion

HEADROOM_ELSEWHERE = 0.3
#: A host may pass its limit briefly (telemetry is seconds old); longer than this is a failure.
LONG_OVERLOAD_S = 5.0


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (q in 0..1), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


#: Per sampling interval (its index, whole seconds), each host's I/O rate (ops/s).
Rates = Mapping[int, Mapping[str, float]]


def served_rates(samples: Iterable[IoSample]) -> tuple[dict[int, dict[str, float]], float]:
    """What Dom0 measured: per interval, each host's VMs' summed served rate; and the interval."""
    rates: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    interval_s = 1.0
    for sample in samples:
        rates[sample.interval_index][sample.host_id] += sample.io_ops_per_s
        interval_s = sample.interval_s
    return rates, interval_s


@dataclass
class ChannelLoad:
    """What the emulated hosts' channels were asked, from their per-second accounting."""

    #: Per whole second (of the later record's time), each host's asked rate over the steps
    #: that ended in it (the records are a second apart: one step, now and then two).
    asked: dict[int, dict[str, float]] = field(default_factory=dict)
    asked_ops: float = 0.0
    served_ops: float = 0.0
    lost_ops: float = 0.0

    @property
    def lost_goodput_pct(self) -> float:
        """Goodput lost to collapse, as a share of what the channels were asked."""
        return 100.0 * self.lost_ops / self.asked_ops if self.asked_ops else 0.0


def channel_load(rows: Iterable[Mapping[str, Any]]) -> ChannelLoad:
    """The channels' accounting (`channel.jsonl` rows of any hosts, in each host's order):
    cumulative counters, so each host's step from one row to the next is what it was asked,
    served and lost in between. A host that restarted (a new incarnation, counters from 0)
    starts afresh; a malformed row is skipped (the file is the host's own, but a crash can
    leave a torn last line, which the caller drops)."""
    load = ChannelLoad()
    last: dict[str, Mapping[str, Any]] = {}
    spans: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0.0])  # ops, s
    for row in rows:
        try:
            host, at = str(row["host_id"]), float(row["at"])
            asked, served, lost = (float(row[k]) for k in ("asked_ops", "served_ops", "lost_ops"))
        except (KeyError, TypeError, ValueError):
            continue
        before = last.get(host)
        last[host] = row
        if before is None or before.get("incarnation") != row.get("incarnation"):
            continue
        step_s = at - float(before["at"])
        d_asked = asked - float(before["asked_ops"])
        if step_s <= 0 or d_asked < 0:
            continue
        span = spans[math.floor(at), host]
        span[0] += d_asked
        span[1] += step_s
        load.asked_ops += d_asked
        load.served_ops += max(0.0, served - float(before["served_ops"]))
        load.lost_ops += max(0.0, lost - float(before["lost_ops"]))
    for (second, host), (ops, seconds) in spans.items():
        load.asked.setdefault(second, {})[host] = ops / seconds
    return load


def overload(
    rates: Rates, limits: Mapping[str, float], interval_s: float = 1.0
) -> tuple[dict[str, float], float]:
    """Seconds each host spent above its limit (its rate in an interval over the limit); and
    of those, the seconds of long overloads (past the first `LONG_OVERLOAD_S` of a streak)
    while another host had headroom."""
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
            above[host] += interval_s
            streak_s[host] += interval_s
            if streak_s[host] > LONG_OVERLOAD_S and roomy - {host}:
                wasted_s += interval_s
    return above, wasted_s


def dispatched_over_limit(decisions: Iterable[DispatchDecision]) -> dict[str, int]:
    """Per host, the jobs dispatched past its limit by the policy's own figures, as its
    decision recorded them: the chosen candidate's demand plus what the job adds (its rate on
    an idle VM; none recorded: 0) above the host's limit. A job decided again (a redelivery)
    counts once, by its last dispatch."""
    chosen: dict[str, tuple[str, bool]] = {}
    for decision in decisions:
        if decision.outcome != DecisionOutcome.DISPATCHED or decision.host_id is None:
            continue
        record = next((c for c in decision.candidates if c.vm_id == decision.vm_id), None)
        over = (
            record is not None
            and record.limit_ops_per_s is not None
            and record.total_io_ops_per_s + (record.job_io_ops_per_s or 0.0)
            > record.limit_ops_per_s
        )
        chosen[decision.job_id] = (decision.host_id, over)
    counts: dict[str, int] = defaultdict(int)
    for host_id, over in chosen.values():
        counts[host_id] += over
    return dict(sorted(counts.items()))


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
    channel: Iterable[Mapping[str, Any]] | None = None,
    decisions: Iterable[DispatchDecision] | None = None,
) -> dict[str, Any]:
    """The run's buckets, response times and overload: from the hosts' `channel` records
    when given (the definition), else from the Dom0 `samples`; with the `decisions`, how many
    jobs the policy itself sent past a limit (`dispatched_over_limit`).

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
    served, interval_s = served_rates(samples)
    served_above, served_wasted_s = overload(served, limits, interval_s)
    load = channel_load(channel) if channel is not None else None
    if load is not None and load.asked:
        above, wasted_s = overload(load.asked, limits)
        source = "channel asked"
    else:
        above, wasted_s, source = served_above, served_wasted_s, "dom0 served"
    p50, p99 = quantile(responses, 0.5), quantile(responses, 0.99)
    p99_all = None
    if submitted_at is not None and ended_at is not None:
        unfinished = (waiting_ids | in_queue | not_read | lost) & set(submitted_at)
        ages = [max(0.0, ended_at - submitted_at[j]) for j in unfinished]
        p99_all = quantile(responses + ages, 0.99)
    over_by_host = dispatched_over_limit(decisions) if decisions is not None else None
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
        "overload_source": source,
        "served_over_limit_s": round(sum(served_above.values()), 1),
        "lost_goodput_ops": round(load.lost_ops) if load is not None else None,
        "lost_goodput_pct": round(load.lost_goodput_pct, 2) if load is not None else None,
        "dispatched_over_limit": sum(over_by_host.values()) if over_by_host is not None else None,
        "dispatched_over_limit_by_host": over_by_host,
        "lost_job_ids": sorted(lost)[:20],
    }
