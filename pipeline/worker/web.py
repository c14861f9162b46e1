"""Stream-table queries over HTTP, served by the worker's Faust web server.

    GET /            the live web page (pipeline/worker/static/index.html)
    GET /status      this worker: policy, fleet view readiness, counts
    GET /hosts       per host: limit, totals, headroom, eligibility, telemetry age, its VMs
    GET /vms         per VM: host, job type, load, io_per_job (and where it came from), ...
    GET /waiting     jobs waiting for an eligible host, in this worker's partitions, and per
                     job type how many and why (the newest reason and its funnel)
    GET /jobs/ID     one job's latest status (this worker's partitions from memory, else read
                     from the job-status topic)
    GET /decisions   the most recent decisions of this worker (?limit=N)
    GET /job-types   per job type: VMs, waiting jobs and why, response-time percentiles
    GET /metrics     Prometheus exposition

Every answer is JSON (but /metrics). Views read state; they never change it, nor how the
dispatcher runs: they build their own snapshot (`SnapshotSource.build`), never the
dispatcher's cached one, whose rebuilds are paced by their cost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from faust.web import Request, Response, View

from pipeline.fleet.status import fleet_status
from pipeline.topics.jobs import latest_status
from pipeline.worker import exports
from pipeline.worker.state import Pipeline


def register(pipeline: Pipeline) -> None:
    app = pipeline.app

    def hosts_now() -> list[dict[str, Any]]:
        snapshot = pipeline.dispatcher.snapshots.build(pipeline.clock())
        return fleet_status(pipeline.view, snapshot, pipeline.dispatcher.policy)

    def lag() -> dict[str, int]:
        """Messages behind the end of each input topic, from Faust's monitor (read vs end)."""
        monitor = app.monitor
        behind: dict[str, int] = {}
        for tp, end in monitor.tp_end_offsets.items():
            read = monitor.tp_read_offsets.get(tp, -1)
            behind[tp.topic] = behind.get(tp.topic, 0) + max(0, end - (read + 1))
        behind[pipeline.topics.name("jobs")] = pipeline.dispatch.lag()  # not a Faust consumer
        return behind

    exports.register(pipeline)
    page = (Path(__file__).parent / "static" / "index.html").read_bytes()

    @app.page("/")
    class IndexView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; give the whole header instead.
            return self.bytes(page, headers={"Content-Type": "text/html; charset=utf-8"})

    @app.page("/status")
    class StatusView(View):
        async def get(self, request: Request) -> Response:
            view = pipeline.view
            counts = pipeline.metrics.counts
            core = pipeline.core
            service = pipeline.dispatch
            return self.json(
                {
                    "app_id": pipeline.settings.app_id,
                    "policy": pipeline.dispatcher.policy.name,
                    "fleet_ready": pipeline.fleet.ready.is_set(),
                    "dispatch_ready": service.recovered.is_set(),
                    "hosts": len(view.hosts),
                    "vms": len(view.vms),
                    "waiting": sum(book.waiting_count() for book in core.books.values()),
                    "in_flight": pipeline.dispatcher.snapshots.in_flight.total(),
                    "decisions": dict(core.counts.by_outcome),
                    "dead_letters": counts["dead_letters"],
                    "duplicates": core.counts.duplicates,
                    "refused_status": core.counts.rejected_status,
                    "moved": core.counts.moved,
                    "retried": core.counts.retried,
                    "snapshot_rebuild_ms": round(
                        pipeline.dispatcher.snapshots.rebuild_cost_s * 1000, 3
                    ),
                    "stats_events": dict(pipeline.metrics.stats_events),
                    "stats_vm_samples": pipeline.metrics.stats_vm_samples,
                    "stats_vm_samples_s": round(pipeline.metrics.stats_vm_samples_s, 6),
                    "job_partitions": sorted(core.books),
                    "batches": service.batches,
                    "producer_renewals": service.producer.renewals,
                    "lag": service.lag(),
                    "time": pipeline.clock(),
                }
            )

    @app.page("/hosts")
    class HostsView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"hosts": hosts_now(), "time": pipeline.clock()})

    @app.page("/vms")
    class VmsView(View):
        async def get(self, request: Request) -> Response:
            vms = [vm for host in hosts_now() for vm in host["vms"]]
            return self.json({"vms": vms, "time": pipeline.clock()})

    @app.page("/waiting")
    class WaitingView(View):
        async def get(self, request: Request) -> Response:
            waiting = [
                {"partition": partition, **exports.waiting_entry(tracked)}
                for partition, tracked in pipeline.core.waiting()
            ]
            by_type = exports.waiting_by_type(pipeline)
            return self.json({"waiting": waiting, "count": len(waiting), "by_type": by_type})

    @app.page("/jobs/{job_id}")
    class JobView(View):
        async def get(self, request: Request, job_id: str) -> Response:
            status = pipeline.core.find(job_id)
            if status is None:
                # Not in flight here: another worker's, ended, or unknown. Ask the log.
                loop = asyncio.get_running_loop()
                status = await loop.run_in_executor(
                    None, latest_status, pipeline.kafka, pipeline.topics, job_id, 10.0
                )
            if status is None:
                return self.json(
                    {"error": f"no job {job_id!r}: never submitted, or ended and forgotten"},
                    status=404,
                )
            return self.json(status.model_dump(mode="json", exclude_none=True))

    @app.page("/decisions")
    class DecisionsView(View):
        async def get(self, request: Request) -> Response:
            try:
                limit = int(request.query.get("limit", "100"))
            except ValueError:
                return self.json({"error": "limit must be an integer"}, status=400)
            recent = pipeline.core.recent[-limit:] if limit > 0 else []
            return self.json(
                {"decisions": [decision.model_dump(mode="json") for decision in recent[::-1]]}
            )

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            exports.refresh(pipeline, hosts_now(), lag())
            return self.bytes(
                pipeline.metrics.exposition(), content_type="text/plain; version=0.0.4"
            )
