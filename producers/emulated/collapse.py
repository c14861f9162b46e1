"""The I/O channel's goodput collapse past saturation: one pure formula for every model of it.

The paper's bottleneck is the driver domain (Dom0): every guest I/O passes through it, so a host
serves at most its capacity C for all its guests together, and past saturation it does worse
than that (Dom0 starves of CPU, queues overflow, TCP retransmits: bandwidth collapses). Asked for
a demand D > C, the channel delivers

    C_eff = C / (1 + collapse * (D / C - 1))

shared among the guests in proportion to what they ask (processor sharing), so every guest's
I/O runs at `speed = C_eff / D` of what it asked. `collapse = 0` is plain processor sharing
(delivered stays at C); with the default 0.5, asking twice the capacity delivers two thirds of
it. `lost_goodput_ops_per_s` is min(D, C) - C_eff: what the host would have delivered without
collapse and did not.

Two models use it and must agree: the emulated hosts' channel (`producers.emulated.channel`,
real processes) and the simulator's (`benchmarks.sim.channel`). It lives here, beside the
emulated hosts, because producers may import only the wire contract (`pipeline.{events,topics,
settings,errors}`, `tests/unit/test_house_rules.py`) while the simulator may import anything; it
imports nothing itself.
"""

from __future__ import annotations

#: The collapse parameter both models default to (a modelling choice, not a measurement).
DEFAULT_COLLAPSE = 0.5


def effective_capacity_ops_per_s(
    demand_ops_per_s: float, capacity_ops_per_s: float, collapse: float
) -> float:
    """What the channel delivers when asked for `demand_ops_per_s`."""
    if demand_ops_per_s <= capacity_ops_per_s:
        return demand_ops_per_s
    overload = demand_ops_per_s / capacity_ops_per_s - 1.0
    return capacity_ops_per_s / (1.0 + collapse * overload)


def speed(demand_ops_per_s: float, capacity_ops_per_s: float, collapse: float) -> float:
    """The fraction of what it asks that every guest of the host gets (0..1]."""
    if demand_ops_per_s <= capacity_ops_per_s:
        return 1.0
    return (
        effective_capacity_ops_per_s(demand_ops_per_s, capacity_ops_per_s, collapse)
        / demand_ops_per_s
    )


def lost_goodput_ops_per_s(
    demand_ops_per_s: float, capacity_ops_per_s: float, collapse: float
) -> float:
    """min(D, C) - C_eff: the goodput collapse costs (0 up to saturation)."""
    if demand_ops_per_s <= capacity_ops_per_s:
        return 0.0
    return capacity_ops_per_s - effective_capacity_ops_per_s(
        demand_ops_per_s, capacity_ops_per_s, collapse
    )
