"""The dispatcher's state, named in one place: two durable tables and their in-memory indexes.

- `waiting` (table `waiting_jobs`, RocksDB + changelog): jobs with no eligible host yet, and
  `waiting_index` over it, per partition and job type;
- `dispatched` (table `dispatched`): recently dispatched job ids (for idempotent redelivery), and
  `dedupe` over it, saying when each may be forgotten;
- `recent_decisions`: the newest decisions, as made, for `/decisions` (memory only).

Both tables are partitioned like `jobs`. The indexes cover the partitions this worker owns; a
rebalance clears them (`on_revoked`) and the retry agent rebuilds each partition's from its
table on that partition's first tick.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator

import faust

from pipeline.dispatch.index import DedupeHorizon, WaitingIndex
from pipeline.dispatch.rows import DispatchedRow, WaitingRow
from pipeline.edge.json_table import ModelTable, Row
from pipeline.edge.metrics import PipelineMetrics
from pipeline.errors import RowError
from pipeline.events import DispatchDecision

log = logging.getLogger(__name__)


class DispatchState:
    def __init__(
        self, app: faust.App, partitions: int, metrics: PipelineMetrics, recent: int
    ) -> None:
        self.metrics = metrics
        self.waiting: ModelTable[WaitingRow] = ModelTable.declare(
            app, "waiting_jobs", partitions, WaitingRow, help="jobs with no eligible host yet"
        )
        self.dispatched: ModelTable[DispatchedRow] = ModelTable.declare(
            app, "dispatched", partitions, DispatchedRow, help="job id -> VM, for redelivery"
        )
        self.waiting_index = WaitingIndex()
        self.dedupe = DedupeHorizon()
        self.recent_decisions: deque[DispatchDecision] = deque(maxlen=recent)

    def get(self, table: ModelTable[Row], key: str) -> Row | None:
        """A row, or None when absent or unreadable (logged and counted, never raised)."""
        try:
            return table.get(key)
        except RowError as exc:
            self._unreadable(table, exc)
            return None

    def rows(
        self, table: ModelTable[Row], unreadable: list[tuple[str, bytes, str]] | None = None
    ) -> Iterator[tuple[str, Row]]:
        """Every readable row of a table; unreadable ones are logged, counted and, if a list
        is given, appended to it as (key, stored bytes, reason) for the caller to dead-letter."""
        for key, raw in table.raw_items():
            try:
                yield key, table.read(key, raw)
            except RowError as exc:
                self._unreadable(table, exc)
                if unreadable is not None:
                    unreadable.append((key, raw, str(exc)))

    def on_revoked(self) -> None:
        """Partitions may move: forget the indexes; each is rebuilt on its partition's tick."""
        self.waiting_index.clear()
        self.dedupe.clear()

    def _unreadable(self, table: ModelTable[Row], exc: RowError) -> None:
        log.error("%s; ignoring the row", exc)
        self.metrics.unreadable_rows.labels(table=table.name).inc()
