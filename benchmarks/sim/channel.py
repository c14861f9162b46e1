"""The host's shared I/O channel in the simulator, as a fluid model: how fast each job progresses.

Model, per host, at any instant:

- each running job asks for `io_ops / run_s` operations per second (its I/O spread evenly over
  its run): `run_s` is its `cpu_s`, or, on a VM whose own device caps its I/O
  (`device_ops_per_s`, as an emulated guest's) below `io_ops / cpu_s`, `io_ops / cap`: it
  paces its I/O at its device's rate and runs longer; the host's *demand* D is the sum over
  its running jobs;
- the channel delivers `producers.emulated.collapse.effective_capacity_ops_per_s(D, C,
  collapse)`: all of D up to the capacity C, and past it a collapsing share, split in
  proportion to demand, so every running job progresses at `speed(D, C, collapse)` <= 1.

The formula is the emulated hosts' own (imported, not copied): the simulator and the real
processes of the demo collapse alike, with the same default parameter.

A job's CPU is its own VM's (no CPU contention between VMs); only the I/O channel is shared, and a
job cannot get ahead of its I/O, so its whole run stretches by 1 / speed.
"""

from __future__ import annotations

from producers.emulated.collapse import (
    DEFAULT_COLLAPSE,
    effective_capacity_ops_per_s,
    lost_goodput_ops_per_s,
    speed,
)

__all__ = ["DEFAULT_COLLAPSE", "effective_capacity_ops_per_s", "lost_goodput_ops_per_s", "speed"]
