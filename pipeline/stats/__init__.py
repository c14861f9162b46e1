"""Per-VM measurements: the paper's Table 1 (calibrate), Table 2 and Eq. 1 (the vm_stats agent).

windows     event-time sliding windows and their configuration
vm_stats    the versioned `vm_stats` row of one VM: windows, io_per_job, in-flight jobs
agent       the Faust agent that keeps the rows and publishes vm-state
calibrate   a host's I/O limit from its VMs' summed I/O (pure)
"""
