"""The faust-streaming workarounds of `pipeline.edge.faust_compat` (see docs/architecture.md)."""

from __future__ import annotations

import asyncio
import inspect
import logging

import faust
import pytest
from faust.tables import TableManager

from pipeline.edge.faust_compat import PromptTableManager, quiet_worker


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


def test_faust_worker_at_warning_turns_the_root_logger_to_debug(root_logger):
    # The upstream behaviour the workaround exists for: if this stops failing, drop it.
    app = faust.App("compat-spinner", loop=asyncio.new_event_loop())
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    root_logger.handlers[:] = [logging.NullHandler()]
    worker.on_setup_root_logger(root_logger, logging.WARNING)
    assert root_logger.level == logging.DEBUG


def test_quiet_worker_leaves_the_root_logger_at_its_level(root_logger):
    app = faust.App("compat-quiet", loop=asyncio.new_event_loop())
    worker = quiet_worker(app, "warning")
    root_logger.handlers[:] = [logging.NullHandler()]
    root_logger.setLevel(logging.WARNING)
    worker.on_setup_root_logger(root_logger, logging.WARNING)
    assert root_logger.level == logging.WARNING
    assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)


def test_faust_table_manager_pauses_a_second_before_recovery():
    # The upstream behaviour PromptTableManager exists for: if this fails, drop the workaround.
    assert "self.sleep(1.0)" in inspect.getsource(TableManager.on_start)


def test_prompt_table_manager_starts_recovery_without_the_pause():
    app = faust.App(
        "compat-tables",
        loop=asyncio.new_event_loop(),
        TableManager="pipeline.edge.faust_compat:PromptTableManager",
    )
    manager = app.tables
    assert isinstance(manager, PromptTableManager)
    steps: list[str] = []

    async def no_pause(seconds: float) -> None:
        raise AssertionError(f"paused {seconds} s")

    async def channels() -> None:
        steps.append("channels")

    async def recovery() -> None:
        steps.append("recovery")

    manager.sleep = no_pause
    manager._update_channels = channels
    manager.recovery.start = recovery
    app.loop.run_until_complete(manager.on_start())
    assert steps == ["channels", "recovery"]


def test_faust_starts_app_services_only_after_table_recovery():
    # The upstream behaviour EarlyServicesApp exists for: if this fails, drop the workaround.
    source = inspect.getsource(faust.App.on_started)
    assert source.index("_wait_for_table_recovery_completed") < source.index(
        "on_started_init_extra_services"
    )


def test_early_services_start_with_the_app_after_its_table_manager():
    from mode import Service

    from pipeline.edge.faust_compat import EarlyServicesApp

    app = EarlyServicesApp("compat-early", loop=asyncio.new_event_loop())
    early = app.early_service(Service(loop=app.loop))
    dependencies = list(app.on_init_dependencies())
    assert dependencies[-1] is early  # started last, so stopped first
    assert dependencies.index(app.tables) < dependencies.index(early)
