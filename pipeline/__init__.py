"""vmlb: an I/O-aware job dispatcher for virtual machines, on Apache Kafka and Faust.

The tree follows the data flow (docs/architecture.md):

    pipeline.events, .topics, .settings, .errors   the wire contract and config
    pipeline.stats      per-VM load and io_per_job (paper steps 2-3, Table 1)
    pipeline.fleet      what every dispatcher knows of the fleet
    pipeline.policy     dispatch policies: pure functions over a fleet snapshot
    pipeline.dispatch   the paper's step 4: jobs to eligible VMs' queues
    pipeline.edge       Kafka and Faust plumbing
    pipeline.worker     the composition root, its state and web views
    pipeline.cli        the `vmlb` command
    pipeline.ops        one-machine tooling: a local broker, the demo
"""

__version__ = "0.1.0"
