"""One-machine tooling: a local broker, the demo, free ports, a worker as a child process."""
