"""The web page's tests share the pipeline tests' harness: a real worker and a reporting fleet."""

from tests.integration.pipeline.conftest import fleet, start_worker

__all__ = ["fleet", "start_worker"]
