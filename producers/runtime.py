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


def show_producer_logs() -> None:
    """Long-running producers report what they do (INFO) even when vmlb runs without -v; the
    Kafka client's own chatter stays at the level -v chose."""
    import logging

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("producers").setLevel(min(root.level or logging.WARNING, logging.INFO))


_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def is_identifier(value: str) -> bool:
    """Whether `value` is a valid host, VM or job type id (as `pipeline.events.Identifier`)."""
    return bool(_IDENTIFIER.match(value))


def require_identifier(value: str, what: str) -> str:
    from pipeline.errors import ConfigError

    if not is_identifier(value):
        raise ConfigError(f"{what} {value!r}: letters, digits, '.', '_', '-' only (max 200)")
    return value


def die_with_parent() -> None:
    """If started by `vmlb host` (VMLB_PARENT_PID set), get SIGTERM when that parent dies, so
    even a SIGKILLed host leaves no guest behind (Linux only; elsewhere a no-op)."""
    import ctypes
    import os
    import sys

    parent = os.environ.get("VMLB_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        return
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
