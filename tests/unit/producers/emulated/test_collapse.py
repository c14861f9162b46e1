"""The collapse formula both channel models use, and that they use the very same one."""

from __future__ import annotations

import pytest

from benchmarks.sim import channel as sim_channel
from producers.emulated import channel as emulated_channel
from producers.emulated import collapse
from producers.emulated.collapse import (
    effective_capacity_ops_per_s,
    lost_goodput_ops_per_s,
    speed,
)


def test_under_capacity_everything_asked_is_delivered() -> None:
    assert speed(100.0, 200.0, collapse=0.5) == 1.0
    assert effective_capacity_ops_per_s(100.0, 200.0, collapse=0.5) == 100.0
    assert effective_capacity_ops_per_s(200.0, 200.0, collapse=0.5) == 200.0  # at capacity
    assert lost_goodput_ops_per_s(200.0, 200.0, collapse=0.5) == 0.0


def test_over_capacity_goodput_collapses() -> None:
    # Twice the capacity: plain sharing halves speed; collapse 0.5 delivers C / 1.5.
    assert speed(200.0, 100.0, collapse=0.0) == pytest.approx(0.5)
    assert effective_capacity_ops_per_s(200.0, 100.0, collapse=0.5) == pytest.approx(100.0 / 1.5)
    assert speed(200.0, 100.0, collapse=0.5) == pytest.approx(1 / 3)
    assert lost_goodput_ops_per_s(200.0, 100.0, collapse=0.5) == pytest.approx(100.0 / 3)
    assert lost_goodput_ops_per_s(200.0, 100.0, collapse=0.0) == 0.0


def test_the_simulator_and_the_emulated_hosts_share_the_formula_and_its_default() -> None:
    assert sim_channel.speed is collapse.speed
    assert sim_channel.effective_capacity_ops_per_s is collapse.effective_capacity_ops_per_s
    assert sim_channel.lost_goodput_ops_per_s is collapse.lost_goodput_ops_per_s
    assert emulated_channel.speed is collapse.speed
    assert sim_channel.DEFAULT_COLLAPSE == collapse.DEFAULT_COLLAPSE == 0.5
