"""The host's shared I/O channel, as a fluid model: how fast each running job progresses.

The paper's bottleneck is the driver domain (Dom0): every guest I/O passes through it, so a host
serves at most `capacity_ops_per_s` for all its guests together, and past saturation it does
worse than that (Dom0 starves of CPU, queues overflow, TCP retransmits: bandwidth collapses).

Model, per host, at any instant:

- each running job asks for `io_ops / cpu_s` operations per second (its I/O spread evenly over
  its run); the host's *demand* D is the sum over its running jobs;
- while D <= C (capacity), every job runs at full speed;
- while D > C, the channel delivers an *effective capacity*
  `C_eff = C / (1 + collapse * (D / C - 1))`, shared in proportion to demand (processor sharing:
  every guest's I/O slows by the same factor), so every running job progresses at speed
  `C_eff / D` < 1. `collapse = 0` is plain processor sharing (throughput stays at C); with
  `collapse = 0.5`, asking for twice the capacity delivers two thirds of it.

A job's CPU is its own VM's (no CPU contention between VMs); only the I/O channel is shared, and a
job cannot get ahead of its I/O, so its whole run stretches by 1 / speed.
"""

from __future__ import annotations


def effective_capacity_ops_per_s(
    demand_ops_per_s: float, capacity_ops_per_s: float, collapse: float
) -> float:
    """What the channel delivers when asked for `demand_ops_per_s`."""
    if demand_ops_per_s <= capacity_ops_per_s:
        return demand_ops_per_s
    overload = demand_ops_per_s / capacity_ops_per_s - 1.0
    return capacity_ops_per_s / (1.0 + collapse * overload)


def speed(demand_ops_per_s: float, capacity_ops_per_s: float, collapse: float) -> float:
    """The fraction of full speed every running job of the host progresses at (0..1]."""
    if demand_ops_per_s <= capacity_ops_per_s:
        return 1.0
    return (
        effective_capacity_ops_per_s(demand_ops_per_s, capacity_ops_per_s, collapse)
        / demand_ops_per_s
    )
