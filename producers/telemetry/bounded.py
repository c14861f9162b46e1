"""Hypervisor calls that may never return, run so that waiting for them is bounded.

A libvirt call can block for as long as one domain is stuck: QEMU stopped or hung on its
storage (the call waits on the domain's monitor, with no timeout), or another client holding
the domain's job (30 s before libvirt gives up). Dom0 must keep metering every other VM
meanwhile, so each call runs on a thread of its own and the caller waits for it a bounded time.

At most one call per key is in flight: a call that overran keeps its key busy until it returns,
and no second call for that key is started meanwhile (a stuck domain costs one thread, not one
per tick). A late result is dropped: by then it is stale.

The threads are daemon threads, not a `ThreadPoolExecutor`'s: the interpreter joins those at
exit, so one call stuck forever would keep `vmlb dom0` from ever exiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, wait
from typing import Any, TypeVar

T = TypeVar("T")


class BoundedCalls:
    """Start calls on their own daemon threads, one in flight per key; wait for them bounded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._in_flight: dict[Hashable, Future[Any]] = {}

    def start(self, key: Hashable, call: Callable[[], T]) -> Future[T] | None:
        """Run `call()` on a new thread; None (nothing started) while a call for `key` runs."""
        future: Future[T] = Future()
        with self._lock:
            if key in self._in_flight:
                return None
            self._in_flight[key] = future

        def run() -> None:
            error: BaseException | None = None
            try:
                result = call()
            except BaseException as exc:  # handed to whoever waits, like an executor does
                error = exc
            # The key is free before the future says done: whoever sees it done may call again.
            with self._lock:
                if self._in_flight.get(key) is future:
                    del self._in_flight[key]
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        future.set_running_or_notify_cancel()
        threading.Thread(target=run, name=f"{self.name}-{key}", daemon=True).start()
        return future

    def wait(self, futures: Mapping[Hashable, Future[T]], timeout_s: float) -> set[Hashable]:
        """Wait until every future is done or `timeout_s` passed; return the keys not done."""
        wait(list(futures.values()), timeout=max(0.0, timeout_s))
        return {key for key, future in futures.items() if not future.done()}

    def busy(self) -> set[Hashable]:
        """Keys whose call is still running (started earlier and not returned yet)."""
        with self._lock:
            return set(self._in_flight)

    def run(self, key: Hashable, call: Callable[[], T], timeout_s: float) -> Future[T] | None:
        """Start `call` and wait for it up to `timeout_s`; the future if it is done, else None
        (it overran now, or a call for `key` from before is still running)."""
        future = self.start(key, call)
        if future is None:
            return None
        self.wait({key: future}, timeout_s)
        return future if future.done() else None
