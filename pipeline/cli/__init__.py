"""The `vmlb` command: one click group, one module per command family."""
