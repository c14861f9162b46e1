"""Child processes of the demo: started in their own process groups, always stopped.

Each child gets its own session, so Ctrl-C in the terminal reaches only the demo, which then stops
its children in order; `stop_all` signals whole groups (a host's guests and Dom0 included) and
escalates to SIGKILL, so nothing is left behind even if a child hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Children:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """Run `vmlb <args>` with `env` added to this process's environment."""
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli.main", *args],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def failed(self) -> list[Child]:
        return [child for child in self.children if child.process.poll() is not None]

    def stop_all(self, grace_s: float = 20.0) -> None:
        """SIGTERM every group (newest first), wait up to `grace_s`, then SIGKILL what is left."""
        for child in reversed(self.children):
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=remaining)
        for child in self.children:
            # Also the group's other members (guests, Dom0) even if the leader has exited.
            _signal(child, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)


def _signal(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, sig)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
