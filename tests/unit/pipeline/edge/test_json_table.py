"""`JsonTable.write_rows`: what `table[key] = value` writes (store, changelog, the persisted
changelog offset), without Faust's per-key path; for the memory store and for RocksDB."""

from __future__ import annotations

import pytest
from faust.stores.base import SerializedStore
from faust.types import TP

from pipeline.edge.faust_compat import writing_for
from tests.unit.pipeline.worker_harness import build, in_loop


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.topic = "t.io-samples"


class _Event:
    """What `write_rows` reads of an event (weak-referenceable, as `writing_for` needs)."""

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
@in_loop
async def test_write_rows_writes_what_a_table_write_would(tmp_path, store):
    h = build(tmp_path, store=store)
    table = h.vm_stats
    p2, p5 = _Event(2), _Event(5)
    await table.write_rows([("a1", b'{"n":1}', p2), ("b1", b'{"n":2}', p5), ("a2", b"{}", p2)])
    assert (table.get("a1"), table.get("b1"), table.get("a2")) == ({"n": 1}, {"n": 2}, {})
    assert h.producer.changelog_of("vm_stats") == [
        (2, b'"a1"', False),
        (2, b'"a2"', False),
        (5, b'"b1"', False),
    ]
    assert [record.value for record in h.producer.changelog] == [b'{"n":1}', b"{}", b'{"n":2}']
    # Faust's own write of a key: the same changelog key, and the same key in the store.
    with writing_for(p5):
        table.table["c1"] = b'{"n":3}'
    faust_record = h.producer.changelog[-1]
    assert (faust_record.key, faust_record.partition) == (table._changelog_key("c1"), 5)
    await table.write_rows([("c1", b'{"n":4}', p5)])
    assert table.get("c1") == {"n": 4}
    data = table.table.data
    if isinstance(data, SerializedStore):
        assert data._encode_key("c1") == table._changelog_key("c1")
        # The persisted changelog offset: the last record of each partition's batch.
        topic = table.table.changelog_topic.get_topic_name()
        assert data.persisted_offset(TP(topic, 2)) == 1  # a2, the second record produced
        # c1's second write: the third record produced (Faust's buffer holds its own write)
        assert data.persisted_offset(TP(topic, 5)) == 2


@in_loop
async def test_write_rows_of_nothing_writes_nothing(tmp_path):
    h = build(tmp_path)
    await h.vm_stats.write_rows([])
    assert h.producer.changelog == []
