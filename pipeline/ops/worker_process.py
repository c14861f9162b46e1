"""One real `vmlb worker` process, started with its own settings and queried over HTTP.

For the tools and tests that run a worker beside them (the pipeline benchmark, the integration
tests); `vmlb demo` starts its worker like its other children. Each worker runs in a session of
its own, so stopping it stops nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.errors import VmlbError
from pipeline.ops.ports import free_port
from pipeline.settings import KafkaSettings


class WorkerProcess:
    """`vmlb worker` with `VMLB_*` settings from `kafka`, `app_id`, `data_dir` and `env`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        app_id: str,
        data_dir: Path,
        env: dict[str, str] | None = None,
        loglevel: str = "info",
        port: int | None = None,
    ) -> None:
        # A worker restarted on the same data dir must keep its port: Faust's assignor keeps
        # each member's URL, and a static member that rejoins with another fails an assertion
        # (faust/assignor/partition_assignor.py, on_assignment) and never consumes again.
        self.port = port if port is not None else free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"worker-{self.port}.log"
        environment = {
            # The broker, prefix and credentials of `kafka`, none inherited from this process.
            **kafka.child_environment(),
            "VMLB_APP_ID": app_id,
            "VMLB_DATA_DIR": str(data_dir),
            "VMLB_WEB_PORT": str(self.port),
            **(env or {}),
        }
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli.main", "worker", "-l", loglevel],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def get(self, path: str) -> Any:
        return json.loads(self.get_text(path))

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
            return answer.read().decode()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise VmlbError(f"worker exited ({self.process.returncode}):\n{self.tail()}")

    def status(self) -> dict[str, Any]:
        self.check_alive()
        return self.get("/status")  # type: ignore[no-any-return]

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until its fleet view has caught up (it then decides jobs)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if self.get("/status")["fleet_ready"]:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise VmlbError(f"worker not ready in {timeout_s:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise VmlbError("no VmRSS in /proc status")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within `timeout_s`."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
