"""Emulated hosts: guests as real processes sharing one real, finite I/O channel.

- `channel`: the pure model of a host's I/O path (capacity, fair service, per-guest counters);
- `protocol`: the wire format between guests, Dom0 and the channel (JSON lines);
- `server`: the backend ("driver domain") that serves the channel over a socket;
- `client`: `IoChannel` as a guest uses it, and the stats reader the `emulated` source uses;
- `config`: a host's configuration (flags or YAML);
- `host`: `vmlb host`: backend, guest workers and Dom0 as one supervised process tree.
"""
