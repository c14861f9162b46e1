"""Calls that may never return, waited for a bounded time (producers.telemetry.bounded)."""

from __future__ import annotations

import threading

import pytest

from producers.telemetry.bounded import BoundedCalls


def test_a_quick_call_answers() -> None:
    calls = BoundedCalls("t")
    future = calls.run("a", lambda: 42, timeout_s=10.0)
    assert future is not None and future.result() == 42


def test_a_stuck_call_is_given_up_keeps_its_key_busy_and_frees_it_when_it_returns() -> None:
    calls = BoundedCalls("t")
    release = threading.Event()
    stuck = calls.start("stuck", release.wait)
    assert stuck is not None
    assert calls.wait({"stuck": stuck}, timeout_s=0.01) == {"stuck"}  # overran
    assert calls.run("stuck", lambda: "again", timeout_s=10.0) is None  # not a second one
    assert calls.busy() == {"stuck"}
    other = calls.run("other", lambda: "fine", timeout_s=10.0)
    assert other is not None and other.result() == "fine"  # other keys are not held up
    release.set()
    stuck.result(timeout=10.0)  # once it returns, its key is free again
    assert calls.busy() == set()
    again = calls.run("stuck", lambda: "back", timeout_s=10.0)
    assert again is not None and again.result() == "back"


def test_wait_returns_the_keys_not_done() -> None:
    calls = BoundedCalls("t")
    release = threading.Event()
    futures = {"quick": calls.start("quick", lambda: 1), "slow": calls.start("slow", release.wait)}
    assert all(f is not None for f in futures.values())
    late = calls.wait({k: f for k, f in futures.items() if f is not None}, timeout_s=0.05)
    release.set()
    assert late == {"slow"}


def test_a_call_that_raises_hands_its_exception_to_the_waiter() -> None:
    calls = BoundedCalls("t")

    def fail() -> None:
        raise ValueError("no")

    future = calls.run("f", fail, timeout_s=10.0)
    assert future is not None
    with pytest.raises(ValueError, match="no"):
        future.result()
    assert calls.busy() == set()


def test_threads_are_daemons_so_a_stuck_call_never_blocks_exit() -> None:
    calls = BoundedCalls("t")
    release = threading.Event()
    calls.start("stuck", release.wait)
    threads = [t for t in threading.enumerate() if t.name == "t-stuck"]
    release.set()
    assert threads and all(t.daemon for t in threads)
