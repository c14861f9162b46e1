"""The faust-streaming workarounds of `pipeline.edge.faust_compat` (see docs/architecture.md)."""

from __future__ import annotations

import asyncio
import logging

import faust
import pytest

from pipeline.edge.faust_compat import quiet_worker


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
