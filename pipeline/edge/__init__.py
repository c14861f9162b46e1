"""Kafka and Faust plumbing of the worker, each in one place.

outputs       raw-bytes topics, the queue-topic cache, dead letters
json_table    Faust tables of JSON rows, encoded once
faust_compat  workarounds for faust-streaming 0.15.3 (see docs/architecture.md)
metrics       what a worker counts: Prometheus metrics and the /status counts
"""
