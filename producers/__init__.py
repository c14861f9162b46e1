"""The edges of vmlb that run next to the hardware: what publishes into Kafka.

- `producers.telemetry`: the Dom0 sampler (`vmlb dom0`): per-VM I/O counters from libvirt or an
  emulated host, as `IoSample`s, plus host and VM registrations.
- `producers.emulated`: emulated hosts (`vmlb host`) whose guests share a real, finite I/O channel.
- `producers.guest`: guest workers (`vmlb guest`) that run the jobs of one VM's queue.
- `producers.submit`: job submission (`vmlb submit` and `Submitter`).

Nothing here imports Faust: these are plain kafka-python clients, per the design card.
"""
