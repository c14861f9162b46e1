"""What every long-running producer command shares: durations on the command line, and stopping
cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import re
import signal
import threading
from types import FrameType

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration_s(text: str, *, what: str = "duration") -> float:
    """`1s`, `500ms`, `2m`, `1.5` (seconds) -> seconds; ValueError naming `what` otherwise."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{what}: {text!r} is not a positive duration like 1s, 500ms, 2m")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (main thread only); a second signal exits at once."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
