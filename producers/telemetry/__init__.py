"""Dom0 telemetry: per-VM I/O request counters, read from the host side and published to Kafka.

Layout, one job per module:
- `source`: the `TelemetrySource` protocol and `VmReading`;
- `sources`: `open_source("libvirt:URI" | "emulated:ADDR")`;
- `libvirt_source`, `emulated_source`: the two sources;
- `counters`: pure deltas and counter-reset handling;
- `changes`: pure detection of VMs that appear, stop, migrate or change job type;
- `sampler`: the pure sampling loop (injected clock) that turns readings into events;
- `dom0`: `vmlb dom0` wired together: the sampler, queue topics, and the Kafka edge
  (`producers.kafka_edge`, buffering in `producers.outbox` through broker outages).
"""
