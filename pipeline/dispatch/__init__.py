"""The paper's step 4: each submitted job to an eligible VM's queue, or durably waiting.

decide     normalize, Dispatcher: the policy over a snapshot -> what to produce (pure)
rows       the typed, versioned rows of `waiting_jobs` and `dispatched`
index      in-memory indexes of those tables, per jobs partition
state      the dispatcher's state, named in one place
effects    what a decided job produces (queue, dispatched row, decision, dead letter)
agent      the `dispatch` agent (jobs topic)
retry      the `retry` agent (dispatch-ticks) and its timer
"""
