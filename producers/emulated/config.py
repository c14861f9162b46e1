"""An emulated host's configuration, from flags or a YAML file, validated once.

host_id: h1
io_capacity_ops_per_s: 2000
collapse: 0.5                 # goodput collapse past capacity (producers.emulated.collapse)
listen: 127.0.0.1:7101        # or unix:/run/vmlb/h1.sock; port 0 picks a free port
vms:
  - {vm_id: h1-io, job_type: io-heavy, device_ops_per_s: 900}   # the VM's own device cap
  - {vm_id: h1-cpu, job_type: cpu-heavy}                        # no cap: may ask the channel
  - {vm_id: h1-rep, job_type: reports, handler: mypkg.jobs:report}
dom0: true                    # also run this host's `vmlb dom0`
dom0_interval_s: 1.0
io_limit_ops_per_s: null      # passed to dom0 (else `vmlb calibrate` measures it)
state_dir: .vmlb/hosts/h1
guest_grace_s: 10
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.events import Identifier, describe_validation_error
from producers.emulated.collapse import DEFAULT_COLLAPSE
from producers.errors import HostConfigError
from producers.guest.handlers import BUILTIN_HANDLERS


class VmSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vm_id: Identifier
    job_type: Identifier
    #: `io-heavy`, `cpu-heavy`, `mixed` or MODULE:FUNCTION; default: the job type if built in.
    handler: str | None = None
    #: ops/s the VM's own device serves at most (a virtio queue, a provisioned volume); None:
    #: no cap of its own, so one busy guest may ask for the whole channel.
    device_ops_per_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _has_handler(self) -> VmSpec:
        if self.handler is None and self.job_type not in BUILTIN_HANDLERS:
            raise ValueError(
                f"VM {self.vm_id} serves {self.job_type!r}, which has no built-in handler: "
                "give handler: MODULE:FUNCTION"
            )
        return self

    @property
    def handler_spec(self) -> str:
        return self.handler or self.job_type


class HostConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host_id: Identifier
    io_capacity_ops_per_s: float = Field(gt=0)
    #: How fast goodput collapses past capacity (the simulator's parameter and default).
    collapse: float = Field(DEFAULT_COLLAPSE, ge=0)
    vms: list[VmSpec] = Field(min_length=1)
    listen: str = "127.0.0.1:0"
    dom0: bool = True
    dom0_interval_s: float = Field(1.0, gt=0)
    io_limit_ops_per_s: float | None = Field(None, gt=0)
    state_dir: str | None = None
    guest_grace_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _unique_vms(self) -> HostConfig:
        seen = set()
        for vm in self.vms:
            if vm.vm_id in seen:
                raise ValueError(f"VM {vm.vm_id} is listed twice")
            seen.add(vm.vm_id)
        return self

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir or f".vmlb/hosts/{self.host_id}")


def build_host_config(data: dict[str, Any], source: str = "flags") -> HostConfig:
    try:
        return HostConfig.model_validate(data)
    except ValidationError as exc:
        raise HostConfigError(describe_validation_error(f"host config ({source})", exc)) from None


def load_host_config(path: Path, overrides: dict[str, Any] | None = None) -> HostConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise HostConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise HostConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise HostConfigError(f"{path}: expected a mapping at the top level")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_host_config(data, source=str(path))


def parse_vm_flag(text: str) -> dict[str, str]:
    """`VM:JOB_TYPE[=MODULE:FUNCTION][@OPS_PER_S]` -> a VmSpec mapping (@: the device cap)."""
    usage = "expected VM:JOB_TYPE[=MODULE:FUNCTION][@OPS_PER_S]"
    body, at, cap = text.partition("@")
    vm_id, sep, rest = body.partition(":")
    if not sep or not vm_id or not rest or (at and not cap):
        raise HostConfigError(f"--vm {text!r}: {usage}")
    job_type, _, handler = rest.partition("=")
    spec = {"vm_id": vm_id, "job_type": job_type}
    if handler:
        spec["handler"] = handler
    if cap:
        spec["device_ops_per_s"] = cap  # validated (a number > 0) with the rest of the config
    return spec
