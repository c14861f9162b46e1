"""Loopback ports for the processes vmlb starts itself (local broker, demo, tests)."""

from __future__ import annotations

import socket


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on `port` now (it may be taken a moment later)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_run(length: int, host: str = "127.0.0.1", attempts: int = 50) -> int:
    """The first of `length` consecutive free ports (a broker node needs a client and a
    controller port; node i of a cluster uses first + 2i and first + 2i + 1)."""
    for _ in range(attempts):
        first = free_port(host)
        if first + length < 65535 and all(port_free(first + i, host) for i in range(1, length)):
            return first
    raise RuntimeError(f"no {length} consecutive free ports on {host}")
