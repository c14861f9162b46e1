"""`faust -A pipeline.app worker`: the default worker's Faust app, built on first access.

The composition root is `pipeline.worker.app`; this module only names its app where Faust's own
command line looks for it.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from pipeline.worker import kafka_outage
        from pipeline.worker.app import default_pipeline

        kafka_outage.install()  # as `vmlb worker` does
        return default_pipeline().app
    raise AttributeError(name)
