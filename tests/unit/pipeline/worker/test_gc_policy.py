"""The worker's collector settings (`pipeline.worker.gc_policy`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pipeline.settings import PipelineSettings
from pipeline.worker import gc_policy


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a test does to the collector is undone after it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_tune_freezes_what_exists_and_raises_only_the_youngest_threshold(
    collector: None,
) -> None:
    before = gc.get_freeze_count()
    gc_policy.tune(10_000)
    assert gc.get_freeze_count() > before  # the modules and classes loaded so far
    assert gc.get_threshold() == (10_000, gc_policy.OLDER_EVERY, gc_policy.OLDER_EVERY)


def test_cycles_made_after_tuning_are_still_collected(collector: None) -> None:
    gc_policy.tune(10_000)
    found = []
    cycle = Cycle()
    gc.callbacks.append(lambda phase, info: found.append(info["collected"]))
    try:
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.callbacks.pop()
    assert sum(found) >= 1


def test_the_threshold_is_a_setting_with_cpythons_default_one_step_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert PipelineSettings().gc_young_threshold == 10_000
    monkeypatch.setenv("VMLB_GC_YOUNG_THRESHOLD", "700")
    assert PipelineSettings().gc_young_threshold == 700
    monkeypatch.setenv("VMLB_GC_YOUNG_THRESHOLD", "0")
    with pytest.raises(ValueError):
        PipelineSettings()
