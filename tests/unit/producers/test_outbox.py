"""The bounded outbox that rides out broker outages (producers.outbox)."""

from __future__ import annotations

from producers.outbox import Outbox


def test_fifo_is_bounded_and_drops_oldest_counting_them() -> None:
    outbox = Outbox(max_messages=3)
    for i in range(5):
        outbox.put("samples", None, str(i).encode())
    assert outbox.dropped == 2
    assert [m.value for m in outbox.take()] == [b"2", b"3", b"4"]
    assert len(outbox) == 0


def test_compacted_messages_keep_only_the_latest_per_key_and_are_never_dropped() -> None:
    outbox = Outbox(max_messages=1)
    outbox.put("vms", b"a", b"a1", compacted=True)
    outbox.put("vms", b"b", b"b1", compacted=True)
    outbox.put("vms", b"a", b"a2", compacted=True)
    outbox.put("samples", None, b"s1")
    outbox.put("samples", None, b"s2")
    assert outbox.dropped == 1
    assert [m.value for m in outbox.take()] == [b"b1", b"a2", b"s2"]


def test_failed_message_goes_back_first_in_line() -> None:
    outbox = Outbox(max_messages=10)
    outbox.put("samples", None, b"1")
    outbox.put("samples", None, b"2")
    first = outbox.take(limit=1)[0]
    outbox.put_back(first)
    assert [m.value for m in outbox.take()] == [b"1", b"2"]


def test_put_back_into_a_full_buffer_drops_the_old_message() -> None:
    outbox = Outbox(max_messages=1)
    outbox.put("samples", None, b"old")
    old = outbox.take()[0]
    outbox.put("samples", None, b"new")
    outbox.put_back(old)
    assert outbox.dropped == 1
    assert [m.value for m in outbox.take()] == [b"new"]


def test_stale_compacted_message_put_back_does_not_replace_a_newer_one() -> None:
    outbox = Outbox()
    outbox.put("vms", b"a", b"running", compacted=True)
    stale = outbox.take()[0]
    outbox.put("vms", b"a", b"stopped", compacted=True)
    outbox.put_back(stale)
    assert [m.value for m in outbox.take()] == [b"stopped"]
    outbox.put_back(stale)  # nothing newer pending: it is retried
    assert [m.value for m in outbox.take()] == [b"running"]
