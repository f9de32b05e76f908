"""Queue sources: where the messages of a Queue live and the I/O that claims, acks,
dead-letters and returns them.

`redis_source` is the Redis side (one list per Queue, atomic Lua scripts); `redis_server`
starts a real redis-server for `docket up` and the tests. The protocol that ties a claim to
a task's launch intent is in docs/architecture.md.
"""
