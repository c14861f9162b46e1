"""The demo's broker: one it started is stopped when it ends, one it found is left running."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pipeline.ops.demo.run import demo_broker
from pipeline.settings import KafkaSettings


class FakeCluster:
    bootstrap = "127.0.0.1:19092"

    def __init__(self, running: bool) -> None:
        self.running = running
        self.calls: list[str] = []

    def is_running(self) -> bool:
        return self.running

    def start(self) -> str:
        self.calls.append("start")
        self.running = True
        return self.bootstrap

    def stop(self) -> list[int]:
        self.calls.append("stop")
        self.running = False
        return []

    def settings(self) -> KafkaSettings:
        return KafkaSettings(broker=self.bootstrap)


@pytest.fixture(autouse=True)
def no_configured_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VMLB_BROKER", raising=False)


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_a_broker_the_demo_started_is_stopped_when_it_ends() -> None:
    cluster = FakeCluster(running=False)
    with demo_broker(quiet(), cluster) as kafka:  # type: ignore[arg-type]
        assert kafka.broker == cluster.bootstrap
        assert cluster.calls == ["start"]
    assert cluster.calls == ["start", "stop"]


def test_a_broker_the_demo_started_is_stopped_when_it_fails() -> None:
    cluster = FakeCluster(running=False)
    with pytest.raises(RuntimeError), demo_broker(quiet(), cluster):  # type: ignore[arg-type]
        raise RuntimeError("a child exited")
    assert cluster.calls == ["start", "stop"]


def test_a_broker_found_running_is_left_running() -> None:
    cluster = FakeCluster(running=True)
    with demo_broker(quiet(), cluster) as kafka:  # type: ignore[arg-type]
        assert kafka.broker == cluster.bootstrap
    assert cluster.calls == [] and cluster.running


def test_a_configured_cluster_is_used_and_never_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMLB_BROKER", "10.0.0.9:9092")
    cluster = FakeCluster(running=False)
    with demo_broker(quiet(), cluster) as kafka:  # type: ignore[arg-type]
        assert kafka.broker == "10.0.0.9:9092"
    assert cluster.calls == []
