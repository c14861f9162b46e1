"""The Faust floor: a Faust agent that does nothing, catching up on a backlog of one topic.

`python -m benchmarks.faust_floor --broker B --topic T --count N --out F` starts a Faust worker
(fresh app id and consumer group, in-memory store, no web server) whose one agent reads `T` as
raw bytes and only counts; when it has seen `N` messages it writes one JSON object to `F`,
`{"faust_noop_per_s": ..., "messages": N, "seconds": ...}`, and exits (to a file: a Faust
worker redirects stdout into its log). The time runs from the
first message to the N-th, so start-up and the group join are not counted.

`vmlb bench pipeline` runs it on the telemetry backlog right after the real worker: whatever the
vm_stats agent costs beyond this, is ours; what this costs is Faust's per-message path on this
machine (the raw aiokafka pass-through is the other reference, the ceiling without Faust).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

import faust

from pipeline.edge.faust_compat import quiet_worker
from pipeline.settings import load_kafka_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True, help="file to write the JSON result to")
    args = parser.parse_args(argv)

    kafka = load_kafka_settings(broker=args.broker)  # security settings from VMLB_* as usual
    app = faust.App(
        f"vmlb-faust-floor-{uuid.uuid4().hex[:8]}",
        broker=kafka.to_faust_url(),
        broker_credentials=kafka.to_faust_credentials(),
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="vmlb-faust-floor-"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    seen = 0
    first_at: float | None = None

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        nonlocal seen, first_at
        async for _ in stream.events():
            if first_at is None:
                first_at = time.monotonic()
            seen += 1
            if seen >= args.count:
                seconds = time.monotonic() - first_at
                result = {
                    "faust_noop_per_s": seen / max(1e-9, seconds),
                    "messages": seen,
                    "seconds": seconds,
                }
                with open(args.out, "w") as out:
                    json.dump(result, out)
                os._exit(0)  # the measure is taken; a graceful Faust stop takes seconds

    sys.argv = [sys.argv[0], "worker", "-l", "warning"]
    quiet_worker(app, "warning").execute_from_commandline()


if __name__ == "__main__":
    main()
