"""vmlb: an I/O-aware job dispatcher for virtual machines, on Apache Kafka and Faust.

Packages:
    pipeline.events     every event on every topic (one schema each, versioned)
    pipeline.topics     topics.yaml loaded into frozen specs, and applied to a cluster
    pipeline.settings   settings from flags and environment (VMLB_*)
    pipeline.broker     a real local Kafka broker (KRaft) installed from Maven Central
    pipeline.policy     dispatch policies: pure functions over a fleet snapshot
    pipeline.cli        the `vmlb` command
"""

__version__ = "0.1.0"
