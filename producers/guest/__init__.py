"""Guest workers: run the jobs of one VM's queue topic and report each completion.

- `io`: the `IoChannel` a handler does its I/O through;
- `handlers`: the built-in handlers and loading `MODULE:FUNCTION`;
- `completed`: the local store of completed job ids (dedupe of redeliveries);
- `busy`: what a guest can see of its own load;
- `worker`: the consume-run-complete-commit loop (`vmlb guest`).
"""
