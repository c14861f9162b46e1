"""The I/O formulas on hand-computed numbers."""

from __future__ import annotations

import pytest

from pipeline.policy.load import committed_io_ops, paper_total_io_ops_per_s, projected_io_ops_per_s
from pipeline.policy.snapshot import PolicyConfig
from pipeline.policy.testing import fleet, host, vm


def test_projected_uses_paper_total_when_it_exceeds_measured() -> None:
    # paper total = 2*100 + 1*50 = 250; measured = 100 + 20 = 120; max = 250.
    # committed = (3 + 1 claim)*100 + 2*50 = 500; horizon 5 s -> 100 ops/s. Projected 350.
    snap = fleet(
        host(
            "h1",
            vms=[
                vm("a", load=2.0, io_per_job=100.0, io_ops_per_s=100.0, outstanding=3),
                vm("b", load=1.0, io_per_job=50.0, io_ops_per_s=20.0, outstanding=2),
            ],
        ),
        config=PolicyConfig(horizon_s=5.0),
    )
    snap.claim("a")
    h = snap.host("h1")
    assert paper_total_io_ops_per_s(snap, h) == pytest.approx(250.0)
    assert committed_io_ops(snap, h) == pytest.approx(500.0)
    assert projected_io_ops_per_s(snap, h) == pytest.approx(350.0)


def test_projected_uses_measured_when_it_exceeds_paper_total() -> None:
    # measured 600 > paper 1*100; committed 1*100 over 2 s = 50. Projected 650.
    snap = fleet(
        host("h1", vms=[vm("a", load=1.0, io_per_job=100.0, io_ops_per_s=600.0, outstanding=1)]),
        config=PolicyConfig(horizon_s=2.0),
    )
    assert projected_io_ops_per_s(snap, snap.host("h1")) == pytest.approx(650.0)


def test_committed_io_of_unmeasured_vm_uses_type_median_else_zero() -> None:
    snap = fleet(
        host(
            "h1",
            vms=[
                vm("a", "t", io_per_job=80.0),
                vm("b", "t", outstanding=2),
                vm("c", "u", outstanding=4),
            ],
        ),
    )
    # b: 2 jobs * median(t)=80 -> 160; c: type u unmeasured -> 0.
    assert committed_io_ops(snap, snap.host("h1")) == pytest.approx(160.0)
