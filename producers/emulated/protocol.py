"""The emulated host's wire format: one JSON object per line, over TCP or a unix socket.

Requests and replies (every reply has `ok`; a refused request has `ok: false` and `error`):

    {"op": "io", "vm": "vm1", "kind": "block_rd", "ops": 400}
        -> {"ok": true, "ops": 400, "queued_s": 0.01, "service_s": 0.2}
        served when the channel has done all 400 operations; `kind` is net_rx, net_tx,
        block_rd or block_wr (default block_rd); `service_s` is what they take alone at the
        VM's device rate, `queued_s` what the shared channel added.
    {"op": "stats"}
        -> {"ok": true, "host_id": "h1", "incarnation": "...", "capacity_ops_per_s": 2000,
            "collapse": 0.5, "served_ops": 123.0, "asked_ops": 130.0, "lost_ops": 2.0,
            "busy_s": 0.06, "saturated_s": 0.01, "pending_ops": 0,
            "vms": {"vm1": {"job_type": "io-heavy", "running": true, "device_ops_per_s": 800,
                            "counters": {"net_rx_packets": 0, ...}}}}

Addresses: `HOST:PORT` (TCP) or `unix:/path/to/socket`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from producers.errors import ChannelError

MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Address:
    """Where an emulated host's channel listens."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        if not path:
            raise ChannelError(f"address {text!r}: unix: needs a socket path")
        return Address(path=path)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ChannelError(f"address {text!r}: expected HOST:PORT or unix:/path")
    return Address(host=host, port=int(port))


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChannelError(f"not a JSON line: {exc}") from None
    if not isinstance(message, dict):
        raise ChannelError("expected a JSON object")
    return message
