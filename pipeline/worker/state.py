"""One worker's parts, as the composition root wired them (for the web views and tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faust

from pipeline.dispatch.core import DispatchCore
from pipeline.dispatch.decide import Dispatcher
from pipeline.dispatch.service import DispatchService
from pipeline.edge.metrics import PipelineMetrics
from pipeline.edge.outputs import Outputs
from pipeline.fleet.consumer import FleetConsumer
from pipeline.fleet.view import FleetView
from pipeline.settings import KafkaSettings, PipelineSettings
from pipeline.stats.agent import StatsAgent
from pipeline.topics import Topics


@dataclass
class Pipeline:
    app: faust.App
    kafka: KafkaSettings
    settings: PipelineSettings
    topics: Topics
    clock: Callable[[], float]
    metrics: PipelineMetrics
    outputs: Outputs
    view: FleetView
    fleet: FleetConsumer
    dispatcher: Dispatcher
    core: DispatchCore
    dispatch: DispatchService
    stats: StatsAgent
