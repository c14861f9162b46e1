"""The paper's step 4: each submitted job to an eligible VM's queue, or durably waiting.

waiting    WaitingQueue: which waiting job of a type goes next (priority, fair turns; pure)
book       PartitionBook: the dispatcher's state of one jobs partition, by latest status
decide     normalize, Dispatcher: the policy over a snapshot -> what to produce (pure)
core       DispatchCore: what to write for each input, in which order (pure)
service    DispatchService: the Kafka loop around the core (batches, recovery, commits)
"""
