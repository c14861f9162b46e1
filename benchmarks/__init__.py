"""Benchmarks of vmlb: the discrete-event simulator (`benchmarks.sim`) and its scenarios."""
