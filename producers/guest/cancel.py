"""What a running job's handler can ask: has its job been cancelled?

    from producers.guest.cancel import cancel_requested

    def handler(job, io):
        for chunk in work:
            if cancel_requested():
                return {"stopped": "cancel requested"}
            ...

The guest runs each job's handler in a thread of its own and marks it here when a cancel for
that job arrives (`job-control`); a job cancelled while it runs ends `cancelled` whatever the
handler returns, so honouring the request only saves the work.
"""

from __future__ import annotations

import threading

_local = threading.local()


def bind(flag: threading.Event) -> None:
    """The guest binds the running job's cancel flag to the handler's thread."""
    _local.flag = flag


def cancel_requested() -> bool:
    flag: threading.Event | None = getattr(_local, "flag", None)
    return flag is not None and flag.is_set()
