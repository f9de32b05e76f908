"""Docket's Python client: a small, typed API over etcd, and the four runners of Yelp's
task_processing library (sync, promise, async, subscription) on top of it.

It knows etcd's key layout and nothing of Mesos, so it works against any Docket deployment
whose etcd it can reach. Objects are the pydantic models of `controller.api`::

    from controller.api import Job
    from controller.client import Client, JobFailed

    job = Job.model_validate({"apiVersion": "docket.dev/v1", "kind": "Job",
                              "metadata": {"name": "hello"},
                              "spec": {"template": {"command": "echo hello"}}})
    with Client("127.0.0.1:2379") as docket:
        result = docket.run(job, timeout=60)          # sync: blocks; JobFailed on Failed
        print(result.status.phase, [r.exit_code for r in result.executions])

- **objects**: `apply(obj)` (create or compare-and-swap update; the stored revision),
  `get(kind, ns, name)`, `list(kind, ns=None)`, `delete(kind, ns, name)`,
  `status(kind, ns, name)`, `executions(kind, ns, name)`; `push(ns, queue, messages)` adds
  messages to an etcd- or Redis-backed Queue. Task output is read with `docket logs` (through
  the Mesos agents, which this client does not talk to).
- **sync**: `run(job, timeout=None)` -> JobResult; raises JobFailed, TimeoutError, JobDeleted.
- **promise**: `submit(job)` -> concurrent.futures.Future[JobResult].
- **async**: `await run_async(job, timeout=None)`; `on(predicate, callback)` calls handlers
  (in the registering event loop) on status writes and new execution records.
- **subscription**: `subscribe(Selector(...), from_revision=None)` yields StatusEvent and
  ExecutionEvent in revision order, with no gap or repeat across an etcd restart.

Runnable examples: deploy/examples/client/.
"""

from controller.client._client import (
    TERMINAL_PHASES,
    ApplyConflict,
    Client,
    ClientError,
    Handler,
    JobDeleted,
    JobFailed,
    JobResult,
    NotFound,
)
from controller.client.events import (
    Event,
    ExecutionEvent,
    Selector,
    StatusEvent,
    Subscription,
    resolve_kind,
)

__all__ = [
    "TERMINAL_PHASES",
    "ApplyConflict",
    "Client",
    "ClientError",
    "Event",
    "ExecutionEvent",
    "Handler",
    "JobDeleted",
    "JobFailed",
    "JobResult",
    "NotFound",
    "Selector",
    "StatusEvent",
    "Subscription",
    "resolve_kind",
]
