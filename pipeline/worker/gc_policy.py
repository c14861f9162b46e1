"""The worker's garbage-collector settings: one place, measured (docs/evaluation.md, "The
worker's collector pauses").

CPython's cyclic collector runs its youngest generation every 700 allocations (net of frees)
of container objects, the middle one every 10 of those, and the whole heap every 10 of the
middle ones (once the heap grew by a quarter since the last full pass). A worker's heap is its
frameworks (Faust, aiokafka, pydantic: ~100k objects) plus what it holds (every unfinished
job, one object each since `pipeline.dispatch.tracked`; the fleet view, the windows):
hundreds of thousands of objects, every one of them visited by a full pass. Profiled at 4-5k jobs/s (`vmlb bench pipeline`), the worker ran
34 full passes in a run, 5 s of its CPU, each pass stopping the event loop for 100-780 ms: the
whole of the submit-to-queue p99 (a job that arrives during a pass waits it out).

So, at start (`tune`):

- everything imported and built so far is moved out of the collector's sight for good
  (`gc.freeze()`): the frameworks' modules, classes and functions are never garbage, and a
  full pass no longer visits them;
- the youngest generation runs every `young_threshold` allocations (default 10,000) instead of
  700, so the older ones, which run every 10 of the generation below, run 14x less often: the
  same objects are freed (reference counting frees almost everything at once; only cycles wait
  for the collector), a little later.

Nothing else changes: `gc.collect()` still works, and a cycle is still collected, within
~100k allocations instead of ~7k. `VMLB_GC_YOUNG_THRESHOLD=700` gives CPython's default back.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

#: The collector's older generations run every this many collections of the one below
#: (CPython's default, kept: only the youngest generation's threshold is raised).
OLDER_EVERY = 10


def tune(young_threshold: int) -> None:
    """Freeze what exists now and run the youngest generation every `young_threshold`
    allocations (see the module doc)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, OLDER_EVERY, OLDER_EVERY)
    log.debug("gc: %d objects frozen; thresholds %s", gc.get_freeze_count(), gc.get_threshold())
