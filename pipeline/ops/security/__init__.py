"""Who may do what on a secured broker: principals per role, their ACLs, their credentials.

`grants` is pure: each role's permissions as data, derived from topics.yaml (so a topic added
there is covered by the next `vmlb acl provision`). `credentials` writes the 0600 credentials
files the commands read back with `--credentials`. `provision` applies principals and grants to a
cluster through kafka-python's admin client (SCRAM credentials with AlterUserScramCredentials,
ACLs with CreateAcls), idempotently. The broker side (SASL/SCRAM, the StandardAuthorizer) is
`pipeline.ops.broker.local`.
"""
