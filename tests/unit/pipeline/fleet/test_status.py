"""The fleet as an operator reads it (`/hosts`): what each host's Dom0 says of itself."""

from pipeline.events import HostRegistration
from pipeline.fleet.status import fleet_status
from pipeline.policy.registry import build_policy
from tests.unit.pipeline.fleet_builders import CONFIG, NOW, fleet_of_one


def test_each_host_says_how_its_dom0_reads_the_counters():
    view = fleet_of_one()
    policy = build_policy("io-aware", CONFIG)
    assert fleet_status(view, view.snapshot(NOW, CONFIG), policy)[0]["telemetry_path"] is None
    host = HostRegistration(
        host_id="h1", io_limit_ops_per_s=1000.0, telemetry_path="per-device", registered_at=NOW
    )
    view.apply("hosts", host.key(), host.to_bytes())
    hosts = fleet_status(view, view.snapshot(NOW, CONFIG), policy)
    assert [(h["host_id"], h["telemetry_path"]) for h in hosts] == [("h1", "per-device")]
