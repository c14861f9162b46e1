"""The worker's web page in a real headless browser, against a running system.

A real `vmlb worker` serves the page; `FleetDriver` keeps four hosts reporting (two over their
I/O limits, one of them the only host of `batch` jobs) at rates that change while the page is
watched, and jobs are submitted meanwhile (`batch` ones wait). Then
`tests/browser/check_page.mjs` opens the page in Debian's chromium (playwright-core), reads it
twice a few seconds apart and prints what it saw as JSON; this test asserts on that.

Needs `chromium` (Debian's package: /usr/bin/chromium, or $CHROMIUM), `node`, and
`npm ci --prefix tests/browser`. Missing ones skip the test outside CI and fail it under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.integration.pipeline.conftest import FleetDriver, wait_for

REPO = Path(__file__).resolve().parents[3]
BROWSER_DIR = REPO / "tests" / "browser"
SCRIPT = BROWSER_DIR / "check_page.mjs"

FAST = {
    "VMLB_RATE_WINDOW_S": "5",
    "VMLB_IO_PER_JOB_WINDOW_S": "10",
    "VMLB_IO_PER_JOB_MIN_JOBS": "5",
    "VMLB_STALE_AFTER_S": "5",
    "VMLB_HORIZON_S": "5",  # nobody finishes the io jobs here: let a VM hold what it clears in 5 s
}

# host -> (I/O limit, VM, base I/O ops/s, jobs/s): io_per_job = I/O / jobs = 200 ops per job.
FLEET = {
    "host-a": (2000.0, "a-io", 3000.0, 15.0),  # over its limit even at the low swing: not eligible
    "host-b": (1600.0, "b-io", 600.0, 3.0),
    "host-c": (1000.0, "c-io", 200.0, 1.0),
    "host-d": (1000.0, "d-batch", 1600.0, 8.0),  # over its limit: batch jobs wait
}
#: The job type each VM serves (and its completions carry).
JOB_TYPES = {"a-io": "io", "b-io": "io", "c-io": "io", "d-batch": "batch"}
BATCH_JOBS = 3


def browser_prerequisites() -> tuple[str, str]:
    """(node, chromium) paths; skip (fail under CI) naming what to install if any is missing."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    node = shutil.which("node")
    missing = []
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        missing.append(f"chromium at {chromium} (apt-get install chromium)")
    if node is None:
        missing.append("node (Node.js 20 or later)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append("playwright-core (npm ci --prefix tests/browser)")
    if missing:
        reason = "browser check needs: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    assert node is not None
    return node, chromium


class Traffic:
    """While the page is watched: jobs submitted and I/O rates stepping up and down."""

    def __init__(self, fleet: FleetDriver) -> None:
        self.fleet = fleet
        self.submitted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        step = 0
        while not self._stop.wait(1.0):
            step += 1
            swing = 1.0 + 0.25 * ((step % 4) - 1.5) / 1.5  # 0.75 .. 1.25 of the base rate
            for _, vm, io, jobs in FLEET.values():
                self.fleet.report(vm, io * swing, jobs_per_s=jobs * swing, job_type=JOB_TYPES[vm])
            # Nobody completes these jobs: each adds 200 ops / VMLB_HORIZON_S (5 s) = 40 ops/s to
            # its host's projected I/O for good; 12 of them keep host-b and host-c under limit.
            if step % 2 == 0 and self.submitted < 12:
                self.fleet.submit("io")
                self.submitted += 1
                self.fleet.flush()


@pytest.mark.timeout(480)
def test_web_page_shows_hosts_live_in_headless_chromium(fleet, start_worker, tmp_path):
    node, chromium = browser_prerequisites()
    for host, (limit, vm, _, _) in FLEET.items():
        fleet.host(host, io_limit=limit)
        fleet.vm(vm, host, JOB_TYPES[vm])
    fleet.flush()
    for _, vm, io, jobs in FLEET.values():
        fleet.report(vm, io, jobs_per_s=jobs, job_type=JOB_TYPES[vm])
    worker = start_worker(**FAST)

    def settled():
        hosts = {h["host_id"]: h for h in worker.get("/hosts")["hosts"]}
        return (
            set(hosts) == set(FLEET)
            and hosts["host-a"]["eligible"] is False
            and hosts["host-d"]["eligible"] is False
            and hosts["host-b"]["eligible"]
            and hosts["host-c"]["eligible"]
            and hosts
        )

    wait_for(settled, what="host-a and host-d over their limits, host-b and host-c eligible")
    for _ in range(BATCH_JOBS):
        fleet.submit("batch")
    fleet.flush()
    wait_for(
        lambda: worker.get("/waiting")["by_type"].get("batch", {}).get("count") == BATCH_JOBS,
        what="the batch jobs waiting",
    )

    # Where the page's screenshot goes (kept for a look: VMLB_WEB_SCREENSHOT=/some/web.png).
    screenshot = Path(os.environ.get("VMLB_WEB_SCREENSHOT") or tmp_path / "web.png")
    with Traffic(fleet) as traffic:
        run = subprocess.run(
            [
                *(node, str(SCRIPT), f"http://127.0.0.1:{worker.port}/", str(screenshot)),
                *("--hosts", ",".join(FLEET), "--observe-s", "5", "--chromium", chromium),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,  # bounds a failure: cards, first points, then until the page moved
        )
    assert run.returncode == 0, f"check_page failed:\n{run.stderr}\n{run.stdout}"
    seen = json.loads(run.stdout)
    assert traffic.submitted > 0

    cards = {card["name"]: card for card in seen["hosts"]}
    assert sorted(cards) == sorted(FLEET)
    # The host over its limit says so, with the policy's reason; the others take jobs.
    for full in ("host-a", "host-d"):
        assert cards[full]["eligible"] is False
        assert cards[full]["badge"].startswith("not eligible: ")
        assert len(cards[full]["badge"]) > len("not eligible: ")
    assert cards["host-b"]["eligible"] and cards["host-b"]["badge"] == "eligible"
    assert cards["host-c"]["eligible"] and cards["host-c"]["badge"] == "eligible"
    for name, card in cards.items():
        limit = FLEET[name][0]
        assert f"limit {limit:.0f} (configured)" in card["numbers"], card["numbers"]
        assert [row[0] for row in card["vms"]] == [FLEET[name][1]]
        # Live: the chart drew new points to the right, and its numbers moved.
        assert card["chart_grew"], card
        assert card["numbers_changed"], card
    # The header counts the jobs dispatched while the page was watched.
    header = seen["header"]
    assert header["after"]["policy"] == "io-aware"
    assert header["after"]["hosts"] == "4"
    assert int(header["after"]["dispatched"]) > int(header["before"]["dispatched"] or 0), header
    assert header["after"]["error"] == ""
    # The job types: batch jobs wait, with the dispatcher's reason; io jobs complete, with
    # their response-time percentiles (the fleet's guests finish 0.3 s after submission).
    columns = ("type", "vms", "waiting", "oldest", "why", "done", "p50", "p95", "p99")
    types = {row[0]: dict(zip(columns, row, strict=True)) for row in seen["job_types"]}
    assert set(types) == {"io", "batch"}
    batch, io = types["batch"], types["io"]
    assert (batch["vms"], batch["waiting"]) == ("1", str(BATCH_JOBS)), batch
    assert "at limit (hysteresis)" in batch["why"] and batch["oldest"].endswith("s"), batch
    assert (io["vms"], io["waiting"], io["why"]) == ("3", "0", ""), io
    assert int(io["done"]) > 0 and io["p99"] == "300 ms", io
    assert seen["console_errors"] == [] and seen["page_errors"] == []
    assert screenshot.stat().st_size > 10_000
