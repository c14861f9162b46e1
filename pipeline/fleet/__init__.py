"""What every dispatcher knows of the fleet (the paper's hosts and VMs, and their measurements).

view        FleetView: the latest registrations, per-VM states and limits, joined
consumer    FleetConsumer: feeds a FleetView from every partition of the fleet topics
snapshots   SnapshotSource and ClaimBook: policy snapshots with this dispatcher's claims
status      the fleet as an operator reads it (/hosts, `vmlb status`, the web page)
"""
