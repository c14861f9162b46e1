"""`vmlb bench chaos`: the real system under faults, judged only by what its topics hold.

A Jepsen-style harness for one machine: its own broker(s), a fleet of emulated hosts, one or
two workers, uniquely identified jobs at a steady rate, seeded faults while they flow, a drain,
then every topic read back to its end offsets and counted. One module per job:

- `scenarios`: the fleet, the named scenarios and their seeded fault plans (pure);
- `fleet`: the broker(s), the run's topics and processes;
- `load`: the steady submissions; `follow`: a live view of `job-status` that steers the run;
- `faults`: injecting one planned fault; `run`: one run end to end;
- `accounting`: the counts and fault times from the records (pure); `report`: the table.
"""
