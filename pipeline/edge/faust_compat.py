"""Workarounds for faust-streaming 0.15.3, each in one place (see docs/architecture.md).

`writing_for(event)`: table writes from a batch (`stream.take_events()`). Faust picks the
partition of a table write (its changelog record and its RocksDB column) from the stream's
*current event*, which `take_events()` leaves unset, so any write from a batch raises "Cannot
modify table key from outside of stream iteration" (faust-streaming/faust#497, open). Setting the
current event to the batch event that carried the key, for the duration of the write, gives
Faust the partition it would have used per event.

`quiet_worker(app, loglevel)`: a `faust.Worker` that leaves the root logger at `loglevel`. At
WARN and above, Faust's start-up spinner sets the *root logger* to DEBUG for good (so that every
record spins it; faust/worker.py `_setup_spinner_handler`), and every `log.debug()` in Faust and
aiokafka then builds a LogRecord that the handler throws away: 7% of the worker's CPU under load.

`PromptTableManager` (the app's `TableManager` setting): Faust's table manager without its fixed
1 s pause at start. `TableManager.on_start` sleeps 1 s before it starts recovery, so that tables
defined while the app starts can still register (faust/tables/manager.py). vmlb defines every
table in `create_app`, before the worker starts, so the pause only delays each start, and with
it a restarted worker's first fresh VM states (and so its first dispatch).

`EarlyServicesApp` (the app's class): `early_service(service)` starts a service with the app's
own services, right after its table manager, where `app.service` starts it only once every
table is recovered (`App.on_started` waits for recovery, then starts the extra services). The
fleet view and the dispatcher read no Faust table, and a restarted worker's Faust group join and
recovery took 2-7 s (`vmlb bench chaos --scenario two-workers-kill`): its jobs partitions, which
nobody else dispatches meanwhile, waited all of it. They are stopped before the producer and
the consumer (mode stops dependencies in the reverse order of their start).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event
from faust.tables import TableManager
from faust.types import EventT
from mode import ServiceT


@contextmanager
def writing_for(event: EventT) -> Iterator[None]:
    """Table writes inside this block go to `event`'s partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def quiet_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """A Faust worker without the start-up spinner (whose handler forces the root to DEBUG)."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker


class PromptTableManager(TableManager):
    """`TableManager` that starts recovery at once (every table is defined before start)."""

    async def on_start(self) -> None:
        # TableManager.on_start without its `await self.sleep(1.0)`.
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class EarlyServicesApp(faust.App):
    """A Faust app that starts its early services before table recovery completes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._early_services: list[ServiceT] = []

    def early_service(self, service: ServiceT) -> ServiceT:
        """Start `service` with the app, after its table manager (so before recovery ends)."""
        self._early_services.append(service)
        return service

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        return [*super().on_init_dependencies(), *self._early_services]
