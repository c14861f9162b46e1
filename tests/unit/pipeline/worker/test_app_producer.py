"""The worker's Faust producer: batches large enough that a batch of rows does not wait on the
broker for every few records (pipeline.worker.app.faust_app)."""

from __future__ import annotations

from pipeline.worker.app import PRODUCER_MAX_BATCH_BYTES
from tests.unit.pipeline.worker_harness import build


def test_the_workers_producer_batches_what_a_batch_of_rows_writes(tmp_path):
    app = build(tmp_path).pipeline.app
    assert app.conf.producer_max_batch_size == PRODUCER_MAX_BATCH_BYTES == 256 * 1024
    # Kafka's default max.message.bytes (1 MB) takes such a batch.
    assert PRODUCER_MAX_BATCH_BYTES < 1_000_000
