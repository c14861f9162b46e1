"""The worker process: the composition root (`app`), its wired parts (`state`), its web views."""
