"""A real Apache Kafka broker (KRaft) on this machine, without Docker.

`install` resolves the broker's jars from Maven Central with the Maven project in docker/kafka/;
`local` formats storage, starts one or three nodes on loopback, waits until clients are served,
and stops them again. Nothing here is used when VMLB_BROKER points at an existing cluster.
"""
