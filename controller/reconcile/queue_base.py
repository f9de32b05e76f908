"""What the parts of the Queue planner share (`controller/reconcile/queue.py`, with its Redis
steps in `queue_redis.py` and its deletion and status in `queue_finish.py`): the state of one
pass and the small rules every part uses — the two budgets of etcd writes, a batch's name in
its source, its messages, and its launch. Pure, like the planner."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from controller.api import (
    BatchSummary,
    ExecutionRecord,
    Queue,
    QueueStatus,
    QueueTotals,
    RedisSource,
)
from controller.reconcile.actions import Action, Launch, ObjectKey, Observation, RedisOp
from controller.reconcile.queue_model import (
    BACKOFF_LIMIT_EXCEEDED,
    SYSTEM_RETRY_LIMIT_EXCEEDED,
    Batch,
    Message,
    QueueInput,
    batch_env,
    batch_tag,
)
from controller.reconcile.taskid import task_id


class PlannerState:
    """One planning pass: its input, what it decided so far and what it may still write."""

    inp: QueueInput
    now: datetime
    owner: ObjectKey
    uid: int | None
    prev: QueueStatus | None
    actions: list[Action]
    late: list[Action]
    """Source I/O after the pass' etcd writes (RedisOp)."""
    budget: int
    unit_budget: int
    more: bool
    observations: list[Observation]
    wakeups: list[datetime]
    launched_active: int
    launched_messages: int
    taken_from_pending: int
    archived: QueueTotals
    recent: list[BatchSummary]
    claiming: dict[int, str]
    next_batch: int
    current: list[ExecutionRecord]
    superseded: list[ExecutionRecord]
    batches: dict[int, Batch]
    forgotten: set[int]

    def _spend(self, ops: int) -> bool:
        if ops > self.budget:
            self.more = True
            return False
        self.budget -= ops
        return True

    def _spend_units(self, ops: int) -> bool:
        if ops > self.unit_budget:
            self.more = True
            return False
        self.unit_budget -= ops
        return True

    def _tag(self, batch: int) -> str:
        assert self.uid is not None
        return batch_tag(self.inp.namespace, self.inp.name, self.uid, batch)

    def _dead_reason(self, b: Batch, spec_backoff: int, spec_system: int) -> str | None:
        if b.succeeded or b.active:
            return None
        if b.task_failures > spec_backoff:
            return BACKOFF_LIMIT_EXCEEDED
        if b.system_failures > spec_system:
            return SYSTEM_RETRY_LIMIT_EXCEEDED
        return None

    def _messages(self, b: Batch) -> list[Message] | None:
        """The batch's messages still in the source (None: not known, source unavailable)."""
        view = self.inp.view
        if not view.available:
            return None
        if view.type == "etcd":
            return [view.items[i] for i in b.message_ids if i in view.items]
        contents = view.processing.get(b.index, ())
        if contents is None:
            return []
        return [Message(str(i), p) for i, p in enumerate(contents)]

    def _launch(self, queue: Queue, batch: int, attempt: int, messages: Sequence[Message],
                ids: tuple[str, ...] | None) -> None:
        assert self.uid is not None
        tid = task_id(self.owner, self.uid, batch, attempt)
        env = batch_env(self.inp.namespace, self.inp.name, batch,
                        [m.payload for m in messages], queue.spec.batch_separator)
        env["DOCKET_TASK_ID"] = tid
        self.launched_active += 1
        if attempt == 0:
            self.launched_messages += len(messages)
        self.actions.append(Launch(
            tid, self.owner, batch, attempt, queue.spec.template, env,
            record={"message_ids": list(ids) if ids is not None else None,
                    "message_count": len(messages)}))

    def _redis(self, op: Literal["claim", "ack", "dead_letter", "give_back"], batch: int,
               **fields: Any) -> RedisOp:
        source = self.inp.source
        assert isinstance(source, RedisSource)
        queue = self.inp.queue
        dead = (queue.spec.dead_letter if isinstance(queue, Queue) else None)
        return RedisOp(op, source.url, source.key, self._tag(batch),
                       dead_key=dead.key if dead is not None else f"{source.key}:dead",
                       **fields)
