"""The composition root: the Faust app, and each stage of the data flow registered on it.

`create_app()` builds an isolated worker (tests build several, each with its own topic prefix
and app id); `pipeline.app:app` is the default one, built lazily from the environment, so both
`vmlb worker` and `faust -A pipeline.app worker` run it. The flow (docs/architecture.md):

    io-samples, completions             -> stats (vm_stats agent) -> vm-state
    hosts, vms, vm-state, limits, ...   -> fleet (FleetView, in every worker)
    jobs, job-status, job-control       -> dispatch (policy over fleet snapshots) -> queues
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import faust

from pipeline.dispatch.core import DispatchCore
from pipeline.dispatch.decide import Dispatcher
from pipeline.dispatch.service import DispatchService, instance_id
from pipeline.edge.faust_compat import EarlyServicesApp
from pipeline.edge.metrics import PipelineMetrics
from pipeline.edge.outputs import Outputs
from pipeline.errors import EventError
from pipeline.events import DeadLetter, VmRegistration
from pipeline.fleet.consumer import FleetConsumer
from pipeline.fleet.snapshots import SnapshotSource
from pipeline.fleet.view import FleetView
from pipeline.policy.registry import build_policy
from pipeline.settings import (
    KafkaSettings,
    PipelineSettings,
    load_kafka_settings,
    load_pipeline_settings,
)
from pipeline.stats.agent import StatsAgent
from pipeline.topics import Topics, replication_factor, topics_of
from pipeline.worker import web
from pipeline.worker.state import Pipeline


def create_app(
    kafka: KafkaSettings | None = None,
    settings: PipelineSettings | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> Pipeline:
    kafka = kafka or load_kafka_settings()
    settings = settings or load_pipeline_settings()
    topics = topics_of(kafka)
    policy_config = settings.policy_config()
    policy = build_policy(settings.policy, policy_config)  # an unknown name fails here, at start

    app = faust_app(kafka, settings, topics)
    metrics = PipelineMetrics()
    outputs = Outputs(app, topics, metrics, clock)

    # Fleet: what every dispatcher knows (all partitions of the compacted fleet topics).
    view = FleetView()
    view.check_vm = queue_topic_check(topics)

    async def fleet_dead_letter(
        topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
    ) -> None:
        letter = DeadLetter.of(
            topic, partition, offset, key, value, reason=reason, stage="fleet-view", at=clock()
        )
        await outputs.dead_letter(letter)

    fleet = FleetConsumer(kafka, topics, view, fleet_dead_letter, loop=app.loop)
    app.early_service(fleet)  # type: ignore[arg-type]

    # Stats: the paper's steps 2 and 3.
    stats = StatsAgent(
        app,
        topics,
        settings,
        outputs,
        metrics,
        clock,
        view=view,
        view_ready=fleet.ready.is_set,
        view_current=lambda: fleet.read_through_now(timeout_s=settings.stats_view_wait_s),
    ).register()

    # Dispatch: the paper's step 4.
    snapshots = SnapshotSource(view, policy_config)
    dispatcher = Dispatcher(policy, view, snapshots, rng or random.Random())
    core = DispatchCore(
        dispatcher,
        view,
        topics,
        settings,
        clock,
        ready=fleet.ready.is_set,
        rng=rng,
        metrics=metrics,
    )
    dispatch = DispatchService(kafka, topics, settings, core, metrics, fleet.ready, loop=app.loop)
    dispatcher.queue_ready = dispatch.queue_ready
    app.early_service(dispatch)  # type: ignore[arg-type]

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
        stats.on_revoked(revoked)

    pipeline = Pipeline(
        app=app,
        kafka=kafka,
        settings=settings,
        topics=topics,
        clock=clock,
        metrics=metrics,
        outputs=outputs,
        view=view,
        fleet=fleet,
        dispatcher=dispatcher,
        core=core,
        dispatch=dispatch,
        stats=stats,
    )
    web.register(pipeline)
    return pipeline


def queue_topic_check(topics: Topics) -> Callable[[VmRegistration], None]:
    """A VM's queue topic must be the one the template gives its id (never another topic)."""

    def check(vm: VmRegistration) -> None:
        expected = topics.queue_topic(vm.vm_id).name
        if vm.queue_topic != expected:
            raise EventError(
                f"VmRegistration: queue_topic {vm.queue_topic[:250]!r} is not {expected!r}, "
                "the queue topic topics.yaml gives this VM"
            )

    return check


#: The Faust app's producer batch, per partition (see `faust_app`); under the broker's 1 MB.
PRODUCER_MAX_BATCH_BYTES = 256 * 1024


def faust_app(kafka: KafkaSettings, settings: PipelineSettings, topics: Topics) -> EarlyServicesApp:
    # The fleet view and the dispatcher start before table recovery (EarlyServicesApp).
    return EarlyServicesApp(
        settings.app_id,
        broker=kafka.to_faust_url(),
        broker_credentials=kafka.to_faust_credentials(),
        store=settings.store,
        datadir=settings.data_dir,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        topic_partitions=topics.partitions("io-samples"),
        topic_allow_declare=True,
        # The topics Faust declares itself (changelogs, its leader topic) get the deployment's
        # replicas; `vmlb worker` creates them first (worker_topic_specs), min.insync included.
        topic_replication_factor=replication_factor(kafka, topics),
        consumer_auto_offset_reset="earliest",
        TableManager="pipeline.edge.faust_compat:PromptTableManager",
        producer_acks=-1,
        # aiokafka keeps one open batch per partition and one request in flight per broker: a
        # record that does not fit its partition's batch waits until the batch is sent and the
        # request before it answered. The vm_stats agent writes a row (~1.9 KB) and a vm-state
        # record per changed VM per batch, so with Faust's 16 KB default a batch of 1,000 VMs
        # would wait on the broker ~100 times; the dispatcher's own producer uses the same size.
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        # Static membership: a restarted worker takes its stats partitions back at once.
        consumer_group_instance_id=instance_id(settings) + "-stats",
        # Tables are JSON rows stored as bytes (pipeline.edge.json_table); no pickle anywhere.
        key_serializer="json",
        value_serializer="json",
    )


_default: Pipeline | None = None


def default_pipeline() -> Pipeline:
    global _default
    if _default is None:
        _default = create_app()
    return _default
