"""A discrete-event simulator of a virtualised fleet that calls the real dispatch policies.

scenario   the YAML scenario format (pydantic), loading by name or path
arrivals   job arrivals (Poisson, bursts, diurnal), generated up front from the seed
channel    the host's shared I/O channel: processor sharing with collapse past saturation
fleet      simulated hosts, VMs (FIFO, one job at a time) and jobs
view       the dispatcher's view: delayed telemetry in sliding windows, plus claims
engine     the event loop: one scenario, one policy, one run
results    what a run measured (response times, overload, decision cost)
report     markdown, JSON and plots of several runs
cost       the decision-cost micro-benchmark (100 vs 10,000 hosts)
"""
