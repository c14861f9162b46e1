"""`vmlb host`: one emulated host as one supervised process tree.

It runs the host's I/O backend (`ChannelServer`) in this process, each guest as a `vmlb guest`
subprocess pointed at the backend, and (unless disabled) the host's `vmlb dom0` reading the
backend's per-guest counters. A guest that exits is marked not running (Dom0 sees the VM
vanish) and restarted after a pause. On SIGTERM/SIGINT: guests first (each gets its grace period
for the job in hand), then Dom0 (which registers the VMs stopped and the host down), then the
backend. Each child runs in its own process group, killed as a group, and gets SIGTERM if this
process dies (PR_SET_PDEATHSIG), so nothing is left behind.

Every second it appends the channel's cumulative accounting (operations served, asked and lost
to collapse) to `<state_dir>/channel.jsonl`: what the live benchmark judges each host's overload
by, the simulator's definition (`benchmarks.sim.fleet`), from the host's own side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.settings import KafkaSettings
from producers.emulated.channel import IoChannelModel
from producers.emulated.config import HostConfig
from producers.emulated.protocol import Address, parse_address
from producers.emulated.server import ChannelServer, GuestInfo

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 2.0
STATUS_EVERY_S = 10.0
#: How often the channel's accounting is appended to `channel.jsonl` (Dom0's interval).
RECORD_EVERY_S = 1.0
CHANNEL_LOG = "channel.jsonl"


@dataclass
class Child:
    name: str
    argv: list[str]
    vm_id: str | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class EmulatedHost:
    """`guest_credentials` (per VM id) and `dom0_credentials` are credentials files: on a secured
    broker each child connects as its own principal, as it would on a real host."""

    def __init__(
        self,
        config: HostConfig,
        settings: KafkaSettings,
        *,
        verbose: int = 0,
        guest_credentials: Mapping[str, Path] | None = None,
        dom0_credentials: Path | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.verbose = verbose
        self.guest_credentials = dict(guest_credentials or {})
        self.dom0_credentials = dom0_credentials
        self.model = IoChannelModel(
            config.io_capacity_ops_per_s,
            collapse=config.collapse,
            device_ops_per_s={vm.vm_id: vm.device_ops_per_s for vm in config.vms},
        )
        self.guests = {vm.vm_id: GuestInfo(job_type=vm.job_type) for vm in config.vms}
        self.server = ChannelServer(config.host_id, self.model, self.guests)
        self.address: Address | None = None
        self._children: list[Child] = []
        self._stopping = False

    # --- commands of the children -------------------------------------------------------------

    def _vmlb(self, *args: str, credentials: Path | None = None) -> list[str]:
        kafka = ["--broker", self.settings.broker, "--topic-prefix", self.settings.topic_prefix]
        if credentials is not None:
            kafka += ["--credentials", str(credentials)]  # the file's path; never the password
        verbosity = ["-" + "v" * self.verbose] if self.verbose else []
        return [sys.executable, "-m", "pipeline.cli.main", *verbosity, args[0], *kafka, *args[1:]]

    def _guest_argv(self, vm_id: str, handler: str) -> list[str]:
        state_dir = self.config.state_path / "guests" / vm_id
        return self._vmlb(
            "guest", "--vm", vm_id, "--host-id", self.config.host_id, "--handler", handler,
            "--io-channel", str(self.address), "--state-dir", str(state_dir),
            "--grace", f"{self.config.guest_grace_s}s",
            credentials=self.guest_credentials.get(vm_id),
        )  # fmt: skip

    def _dom0_argv(self) -> list[str]:
        argv = self._vmlb(
            "dom0", "--host-id", self.config.host_id, "--source", f"emulated:{self.address}",
            "--interval", f"{self.config.dom0_interval_s}s", "--vms-stopped-on-exit",
            credentials=self.dom0_credentials,
        )  # fmt: skip
        if self.config.io_limit_ops_per_s is not None:
            argv += ["--io-limit", str(self.config.io_limit_ops_per_s)]
        return argv

    # --- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.address = await self.server.start(parse_address(self.config.listen))
        # One line on stdout that scripts can read: where this host's channel listens.
        print(f"host {self.config.host_id}: I/O channel at {self.address}", flush=True)
        log.info(
            "host %s: capacity %.0f ops/s, guests %s",
            self.config.host_id, self.config.io_capacity_ops_per_s, ", ".join(self.guests),
        )  # fmt: skip
        try:
            for vm in self.config.vms:
                child = Child(
                    f"guest {vm.vm_id}", self._guest_argv(vm.vm_id, vm.handler_spec), vm.vm_id
                )
                self._children.append(child)
                child.task = asyncio.create_task(self._supervise(child))
            if self.config.dom0:
                dom0 = Child(f"dom0 {self.config.host_id}", self._dom0_argv())
                self._children.append(dom0)
                dom0.task = asyncio.create_task(self._supervise(dom0))
            status = asyncio.create_task(self._report_status())
            record = asyncio.create_task(self._record_channel(self.config.state_path / CHANNEL_LOG))
            await stop.wait()
            status.cancel()
            record.cancel()
        finally:
            await self._shutdown()

    async def _supervise(self, child: Child) -> None:
        # This host's own Kafka settings, whatever flags gave them, for children without a
        # credentials file of their own.
        env = {**self.settings.child_environment(), "VMLB_PARENT_PID": str(os.getpid())}
        while not self._stopping:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv, env=env, process_group=0
            )
            if child.vm_id:
                self.guests[child.vm_id].running = True
            code = await child.process.wait()
            if child.vm_id:
                self.guests[child.vm_id].running = False
            if self._stopping:
                return
            child.restarts += 1
            log.warning(
                "host %s: %s exited with %s; restarting in %.0fs",
                self.config.host_id, child.name, code, RESTART_PAUSE_S,
            )  # fmt: skip
            await asyncio.sleep(RESTART_PAUSE_S)

    async def _stop_children(self, children: list[Child], grace_s: float) -> None:
        running = [c for c in children if c.process and c.process.returncode is None]
        for child in running:
            _signal_group(child, signal.SIGTERM)
        waits = [asyncio.wait_for(c.process.wait(), grace_s) for c in running if c.process]
        for child, result in zip(
            running, await asyncio.gather(*waits, return_exceptions=True), strict=True
        ):
            if isinstance(result, asyncio.TimeoutError):
                log.warning(
                    "host %s: %s did not stop in %.0fs; killing it",
                    self.config.host_id,
                    child.name,
                    grace_s,
                )
            _signal_group(child, signal.SIGKILL)  # and whatever it started
            if child.process:
                with contextlib.suppress(ProcessLookupError):
                    await child.process.wait()
            if child.vm_id:
                self.guests[child.vm_id].running = False

    async def _shutdown(self) -> None:
        self._stopping = True
        guests = [c for c in self._children if c.vm_id]
        dom0 = [c for c in self._children if not c.vm_id]
        await self._stop_children(guests, self.config.guest_grace_s + 5.0)
        await self._stop_children(dom0, 15.0)
        for child in self._children:
            if child.task:
                child.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.task
        await self.server.close()
        log.info("host %s: stopped", self.config.host_id)

    async def _report_status(self) -> None:
        """The host's own view, every few seconds: what the channel was asked, served, lost."""
        stats = self.server.stats()
        at = time.monotonic()
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            now, last = time.monotonic(), stats
            stats = self.server.stats()
            window_s = now - at
            log.info(
                "host %s: I/O channel asked %.0f ops/s, served %.0f of %.0f, lost %.0f to "
                "collapse, %.0f ops queued",
                self.config.host_id,
                (stats["asked_ops"] - last["asked_ops"]) / window_s,
                (stats["served_ops"] - last["served_ops"]) / window_s,
                self.config.io_capacity_ops_per_s,
                (stats["lost_ops"] - last["lost_ops"]) / window_s,
                stats["pending_ops"],
            )
            at = now

    async def _record_channel(self, path: Path) -> None:
        """Append the channel's cumulative accounting every second (see the module doc)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            while True:
                stats = self.server.stats()
                record = {
                    "host_id": self.config.host_id,
                    "at": time.time(),
                    "incarnation": stats["incarnation"],
                    **{key: stats[key] for key in ("served_ops", "asked_ops", "lost_ops")},
                }
                out.write(json.dumps(record) + "\n")
                out.flush()
                await asyncio.sleep(RECORD_EVERY_S)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, sig)
