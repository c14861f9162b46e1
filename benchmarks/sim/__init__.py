"""A discrete-event simulator of a virtualised fleet that calls the real dispatch policies.

scenario   the YAML scenario format (pydantic), loading by name or path; optional submitters
arrivals   job arrivals (Poisson, bursts, diurnal), generated up front from the seed, each with
           its submitter and priority
channel    the host's shared I/O channel: processor sharing with collapse past saturation
fleet      simulated hosts, VMs (FIFO, one job at a time) and jobs
view       the dispatcher's view: delayed telemetry in sliding windows, plus claims
engine     the event loop: one scenario, one policy, one run; waiting jobs in the live
           `WaitingQueue` (priority, submitters' turns, age)
results    what a run measured (response times, overload, decision cost; per submitter)
report     markdown, JSON and plots of several runs
fairness   each submitter alone, with everyone taking turns, with everyone FIFO
cost       the decision-cost micro-benchmark (100 vs 10,000 hosts)
"""
