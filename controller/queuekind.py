"""The Queue kind's glue to the shared core (docs/architecture.md §6, §8): how its planner's
input is read — the cached spec, status and records, plus a view of its source read through
`controller/queues` just before planning — and the ack the task-event pump makes when it
records a batch's success.

Which source a Queue reads: the one its open batches were claimed from (kept in its status)
while any is open, else its spec's. Changing a Queue's source therefore takes effect once the
batches claimed from the old one are done, and never strands their messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from controller.api import (
    EtcdSource,
    ExecutionRecord,
    InvalidObject,
    Problem,
    Queue,
    QueueStatus,
    RedisSource,
    StatusBase,
)
from controller.api.kinds import QueueSource
from controller.reconcile import ObjectKey, Observation, Plan
from controller.reconcile.queue import QueueInput, SourceView, plan_queue
from controller.reconcile.taskid import parse_task_id
from controller.reconcile.tasks import Outcome, current_incarnation, outcome
from controller.store import Delete, Keys, Put, StoreError

if TYPE_CHECKING:
    from controller.registry import PlanRequest

_SOURCE: TypeAdapter[EtcdSource | RedisSource] = TypeAdapter(QueueSource)
HEAD_LIMIT = 20_000


def _recorded_source(status: QueueStatus | None) -> EtcdSource | RedisSource | None:
    if status is None or status.source is None:
        return None
    try:
        return _SOURCE.validate_python(status.source)
    except ValidationError:
        return None


def _own_dead_letter(req: PlanRequest, queue: Queue) -> Queue | InvalidObject:
    """An etcd Queue's dead letters go under the controller's prefix, in the Queue's own
    namespace, or the Queue is invalid: the controller may write anywhere in its prefix, so a
    key chosen by whoever writes specs would let them overwrite the controller's own keys,
    status or another namespace's data through it (a confused deputy)."""
    dead = queue.spec.dead_letter
    allowed = req.keys.queue_dead_namespace(req.namespace)
    if (dead is None or not isinstance(queue.spec.source, EtcdSource)
            or (dead.key.startswith(allowed) and "/../" not in dead.key + "/")):
        return queue
    return InvalidObject("Queue", req.namespace, req.name, [Problem(
        "spec.deadLetter.key", f"must start with {allowed} (an etcd Queue's dead letters stay "
        "in the controller's prefix and the Queue's namespace)")], b"")


def plan_queue_request(req: PlanRequest) -> Plan:
    status = req.records.status
    if status is not None and not isinstance(status, QueueStatus):
        raise StoreError(f"status of Queue {req.namespace}/{req.name} is not a QueueStatus")
    queue: Queue | InvalidObject | None = None
    uid = status.uid if status is not None else None
    spec_revision = 0
    if req.cached is not None:
        queue = req.cached.object
        uid = req.cached.uid
        spec_revision = req.cached.mod_revision
    if isinstance(queue, Queue):
        queue = _own_dead_letter(req, queue)
    records = [rec for rec, _ in req.records.executions.values()]
    ours = status if status is not None and status.uid == uid else None
    current = current_incarnation(
        records, ObjectKey("Queue", req.namespace, req.name), uid) if uid is not None else []
    open_now = any(outcome(r) != Outcome.SUCCESS for r in current) or bool(
        ours is not None and ours.claiming)
    recorded = _recorded_source(ours) if ours is not None else _recorded_source(status)
    spec_source = queue.spec.source if isinstance(queue, Queue) else None
    source = recorded if (recorded is not None and (open_now or spec_source is None)) \
        else spec_source
    if source is None:
        source = recorded
    batches = sorted({r.index for r in current} | set(ours.claiming if ours else ()))
    limit = HEAD_LIMIT
    if isinstance(queue, Queue):
        limit = min(HEAD_LIMIT, 2 * queue.spec.max_concurrent * queue.spec.batch_size + 1)
    if req.sources is None or uid is None:
        view = SourceView("etcd", available=False, error="no queue source reader")
    else:
        view = req.sources.view(req.namespace, req.name, uid, source, batches, limit)
    return plan_queue(QueueInput(req.namespace, req.name, queue, spec_revision, uid, status,
                                 records, view, req.now, source, req.denial,
                                 req.throttled))


def queue_record_ops(keys: Keys, namespace: str, name: str, old: ExecutionRecord,
                     new: ExecutionRecord) -> list[Put | Delete]:
    """The ack of an etcd batch: its messages are deleted in the transaction that records
    its success (their claims are released by the planner afterwards)."""
    if not new.message_ids or outcome(new) != Outcome.SUCCESS or outcome(old) == Outcome.SUCCESS:
        return []
    parts = parse_task_id(new.task_id)
    if parts is None:
        return []
    return [Delete(keys.queue_item(namespace, name, item)) for item in new.message_ids]


def observe_queue(observation: Observation) -> None:
    from controller import queue_metrics

    if observation.name == "batch_duration":
        queue_metrics.observe_batch(observation.value)


def queue_status_written(namespace: str, name: str, old: StatusBase | None,
                         new: StatusBase | None) -> None:
    from controller import queue_metrics

    if new is None:
        queue_metrics.forget(namespace, name)
    elif isinstance(new, QueueStatus):
        queue_metrics.observe_status(namespace, name,
                                     old if isinstance(old, QueueStatus) else None, new)
