"""Stream-table queries over HTTP, served by the worker's Faust web server.

    GET /            the live web page (pipeline/worker/static/index.html)
    GET /status      this worker: policy, fleet view readiness, counts
    GET /hosts       per host: limit, totals, headroom, eligibility, telemetry age, its VMs
    GET /vms         per VM: host, job type, load, io_per_job (and where it came from), ...
    GET /waiting     jobs waiting for an eligible host, in this worker's partitions
    GET /decisions   the most recent decisions of this worker (?limit=N)
    GET /job-types   per job type: VMs, waiting jobs and why, response-time percentiles
    GET /metrics     Prometheus exposition

Every answer is JSON (but /metrics). Views read state; they never change it, nor how the
dispatcher runs: they build their own snapshot (`SnapshotSource.build`), never the
dispatcher's cached one, whose rebuilds are paced by their cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faust.web import Request, Response, View

from pipeline.fleet.status import fleet_status
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
            return self.json(
                {
                    "app_id": pipeline.settings.app_id,
                    "policy": pipeline.dispatcher.policy.name,
                    "fleet_ready": pipeline.fleet.ready.is_set(),
                    "hosts": len(view.hosts),
                    "vms": len(view.vms),
                    "waiting": pipeline.dispatch_state.waiting_index.count(),
                    "decisions": {k: v for k, v in counts.items() if k != "dead_letters"},
                    "dead_letters": counts["dead_letters"],
                    "pending_claims": pipeline.dispatcher.snapshots.pending_claims(),
                    "snapshot_rebuild_ms": round(
                        pipeline.dispatcher.snapshots.rebuild_cost_s * 1000, 3
                    ),
                    "stats_events": dict(pipeline.metrics.stats_events),
                    "job_partitions": sorted(
                        tp.partition
                        for tp in pipeline.app.consumer.assignment()
                        if tp.topic == pipeline.topics.name("jobs")
                    ),
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
            state = pipeline.dispatch_state
            waiting = [
                {"job_id": job_id, **row.model_dump(mode="json", exclude={"schema_version"})}
                for job_id, row in state.rows(state.waiting)
            ]
            waiting.sort(key=lambda entry: entry["waiting_since"])
            by_type = exports.waiting_by_type(pipeline)
            return self.json({"waiting": waiting, "count": len(waiting), "by_type": by_type})

    @app.page("/decisions")
    class DecisionsView(View):
        async def get(self, request: Request) -> Response:
            try:
                limit = int(request.query.get("limit", "100"))
            except ValueError:
                return self.json({"error": "limit must be an integer"}, status=400)
            recent = list(pipeline.dispatch_state.recent_decisions)[-limit:] if limit > 0 else []
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
