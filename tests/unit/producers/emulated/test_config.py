"""Emulated host configuration and duration flags: errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.emulated.config import build_host_config, load_host_config, parse_vm_flag
from producers.emulated.protocol import parse_address
from producers.errors import ChannelError, HostConfigError
from producers.runtime import parse_duration_s


def test_flags_build_a_config_with_builtin_handlers() -> None:
    config = build_host_config(
        {
            "host_id": "h1",
            "io_capacity_ops_per_s": 2000,
            "vms": [parse_vm_flag("a:io-heavy"), parse_vm_flag("b:rep=pkg.m:f")],
        }
    )
    assert [(vm.vm_id, vm.handler_spec) for vm in config.vms] == [
        ("a", "io-heavy"),
        ("b", "pkg.m:f"),
    ]
    assert config.dom0 and config.listen == "127.0.0.1:0"
    assert config.collapse == 0.5  # the simulator's default
    assert [vm.device_ops_per_s for vm in config.vms] == [None, None]


def test_vm_flag_sets_the_device_cap() -> None:
    config = build_host_config(
        {
            "host_id": "h1",
            "io_capacity_ops_per_s": 2000,
            "vms": [parse_vm_flag("a:io-heavy@900"), parse_vm_flag("b:rep=pkg.m:f@150.5")],
        }
    )
    assert [(vm.vm_id, vm.handler_spec, vm.device_ops_per_s) for vm in config.vms] == [
        ("a", "io-heavy", 900.0),
        ("b", "pkg.m:f", 150.5),
    ]


@pytest.mark.parametrize("cap", ["0", "-5", "fast"])
def test_a_bad_device_cap_names_the_field(cap: str) -> None:
    with pytest.raises(HostConfigError, match="device_ops_per_s"):
        build_host_config(
            {"host_id": "h1", "io_capacity_ops_per_s": 10, "vms": [parse_vm_flag(f"a:mixed@{cap}")]}
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"host_id": "h1", "vms": [{"vm_id": "a", "job_type": "io-heavy"}]},
            "io_capacity_ops_per_s",
        ),
        (
            {
                "host_id": "h1",
                "io_capacity_ops_per_s": 0,
                "vms": [{"vm_id": "a", "job_type": "io-heavy"}],
            },
            "io_capacity_ops_per_s",
        ),
        ({"host_id": "h1", "io_capacity_ops_per_s": 10, "vms": []}, "vms"),
        (
            {
                "host_id": "h1",
                "io_capacity_ops_per_s": 10,
                "vms": [{"vm_id": "a", "job_type": "reports"}],
            },
            "no built-in handler",
        ),
        (
            {
                "host_id": "h1",
                "io_capacity_ops_per_s": 10,
                "vms": [{"vm_id": "a", "job_type": "mixed"}] * 2,
            },
            "listed twice",
        ),
        (
            {
                "host_id": "h 1",
                "io_capacity_ops_per_s": 10,
                "vms": [{"vm_id": "a", "job_type": "mixed"}],
            },
            "host_id",
        ),
    ],
)
def test_bad_config_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(HostConfigError, match=message):
        build_host_config(data)


def test_yaml_config_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "h1.yaml"
    path.write_text(
        "host_id: h1\nio_capacity_ops_per_s: 500\nvms:\n  - {vm_id: a, job_type: mixed}\n"
    )
    assert load_host_config(path, {"io_capacity_ops_per_s": 900.0}).io_capacity_ops_per_s == 900.0
    path.write_text("host_id: h1\nvms: [1]\n")
    with pytest.raises(HostConfigError, match=str(path)):
        load_host_config(path)


def test_vm_flag_needs_a_type() -> None:
    with pytest.raises(HostConfigError, match="--vm 'a'"):
        parse_vm_flag("a")
    with pytest.raises(HostConfigError, match="--vm 'a:mixed@'"):
        parse_vm_flag("a:mixed@")


def test_addresses() -> None:
    assert str(parse_address("127.0.0.1:7000")) == "127.0.0.1:7000"
    assert parse_address("unix:/tmp/h1.sock").path == "/tmp/h1.sock"
    with pytest.raises(ChannelError, match="HOST:PORT"):
        parse_address("nowhere")


def test_durations() -> None:
    assert parse_duration_s("1s") == 1.0
    assert parse_duration_s("250ms") == 0.25
    assert parse_duration_s("2m") == 120.0
    assert parse_duration_s("1.5") == 1.5
    with pytest.raises(ValueError, match="--interval"):
        parse_duration_s("0s", what="--interval")
    with pytest.raises(ValueError, match="--interval"):
        parse_duration_s("soon", what="--interval")
