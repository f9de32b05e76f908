"""A pure simulation of one Queue's world for planner tests: an etcd source (items, claims,
dead letter) or a Redis source (list, processing lists, dead list), the execution records and
status, and Mesos reduced to "this task finished / failed / was lost".

`World.step(now)` builds the planner's input from the world exactly as the controller does
(the source view, the records, the status), plans, and applies the plan the way the executor
and the etcd transaction would: every claim key must be absent and every moved item unchanged,
or nothing of the plan's writes happens; Redis operations run after the writes. The task-event
pump's ack (`queue_record_ops`) is applied when a task is reported finished.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.api import ExecutionRecord, Queue, QueueStatus, decode_object
from controller.queuekind import queue_record_ops
from controller.reconcile import DeleteOwnerData, Kill, Launch, Plan, UpdateExecution, WriteStatus
from controller.reconcile.actions import (
    AckItems,
    ClaimItems,
    DeadLetterItems,
    ForgetExecutions,
    RedisOp,
    ReleaseClaims,
)
from controller.reconcile.denial import Denial
from controller.reconcile.queue import (
    Message,
    QueueInput,
    SourceView,
    parse_claim,
    plan_queue,
)
from controller.store import Delete, Keys

UID = 7
KEYS = Keys()


def make_queue(**spec: Any) -> Queue:
    source = spec.pop("source", {"type": "etcd"})
    doc = {"apiVersion": "docket.dev/v1", "kind": "Queue",
           "metadata": {"name": "q", "namespace": "default"},
           "spec": {"source": source, "template": {"command": "true"},
                    "backoff": {"initialSeconds": 1, "maxSeconds": 4}, **spec}}
    obj = decode_object(doc)
    assert isinstance(obj, Queue)
    return obj


@dataclass
class World:
    queue: Queue | None
    source_type: str = "etcd"
    items: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # id -> payload, rev
    order: list[str] = field(default_factory=list)  # etcd create order; redis list
    claims: dict[str, str] = field(default_factory=dict)
    dead: dict[str, bytes] = field(default_factory=dict)
    processing: dict[int, list[bytes]] = field(default_factory=dict)  # redis
    records: dict[str, ExecutionRecord] = field(default_factory=dict)
    status: QueueStatus | None = None
    available: bool = True
    acked: list[str] = field(default_factory=list)
    produced: int = 0
    launched: list[str] = field(default_factory=list)
    revision: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    conflicts: int = 0
    last_plan: Plan | None = None
    crash_next: bool = False
    denial: Denial | None = None
    """The next plan's writes stop after its units (the executor's earlier transactions):
    its status transaction and Redis operations never happen, as when the controller dies
    between them."""

    # --- producers ---------------------------------------------------------------------------
    def produce(self, payload: bytes) -> str:
        self.produced += 1
        ident = f"m{self.produced:05d}"
        self.items[ident] = (payload, next(self.revision))
        self.order.append(ident)
        return ident

    # --- the view ----------------------------------------------------------------------------
    def view(self, now: datetime) -> SourceView:
        if not self.available:
            return SourceView(self.source_type, available=False, error="down")  # type: ignore[arg-type]
        if self.source_type == "etcd":
            present = [i for i in self.order if i in self.items]
            unclaimed = [i for i in present if i not in self.claims]
            return SourceView(
                "etcd", unclaimed=len(unclaimed),
                head=tuple(Message(i, *self.items[i]) for i in unclaimed[:1000]),
                claims=dict(self.claims),
                items={i: Message(i, *self.items[i]) for i in present},
                oldest_seen=now if unclaimed else None, polled_at=now)
        batches = {r.index for r in self.records.values()}
        if self.status is not None:
            batches |= set(self.status.claiming)
        return SourceView(
            "redis", unclaimed=len(self.order),
            processing={b: tuple(self.processing[b]) if b in self.processing else None
                        for b in batches},
            strays=tuple(self.processing), polled_at=now)

    def source(self) -> Any:
        if self.queue is not None:
            return self.queue.spec.source
        from controller.queuekind import _recorded_source
        return _recorded_source(self.status)

    # --- planning and applying ----------------------------------------------------------------
    def step(self, now: datetime) -> Plan:
        plan = plan_queue(QueueInput("default", "q", self.queue, 11 if self.queue else 0, UID,
                                     self.status, list(self.records.values()), self.view(now),
                                     now, self.source(), self.denial))
        self.last_plan = plan
        self.apply(plan, now)
        return plan

    def apply(self, plan: Plan, now: datetime) -> None:
        # The transaction's conditions first: all or nothing. etcd refuses a transaction
        # that writes one key twice.
        claimed = [i for a in plan.actions if isinstance(a, ClaimItems) for i in a.item_ids]
        assert len(claimed) == len(set(claimed)), f"a key written twice: {claimed}"
        for a in plan.actions:
            if isinstance(a, ClaimItems) and any(i in self.claims for i in a.item_ids):
                self.conflicts += 1
                return
            if isinstance(a, DeadLetterItems) and any(
                    d.id not in self.items or self.items[d.id][1] != d.mod_revision
                    for d in a.items):
                self.conflicts += 1
                return
        # The crash waits for a plan that writes a status (most do something worth losing).
        crashed = self.crash_next and any(isinstance(a, WriteStatus) for a in plan.actions)
        if crashed:
            self.crash_next = False
        for a in plan.actions:
            final = isinstance(a, WriteStatus | ForgetExecutions | DeleteOwnerData | RedisOp) or (
                isinstance(a, DeadLetterItems) and a.counted)
            if crashed and final:
                continue
            if isinstance(a, ClaimItems):
                for i in a.item_ids:
                    self.claims[i] = a.value
            elif isinstance(a, Launch):
                assert a.task_id not in self.records, f"{a.task_id} launched twice"
                self.records[a.task_id] = ExecutionRecord(
                    task_id=a.task_id, index=a.index, attempt=a.attempt, state="LAUNCHING",
                    submitted_at=now, **a.record)
                self.launched.append(a.task_id)
            elif isinstance(a, WriteStatus):
                assert isinstance(a.status, QueueStatus)
                self.status = a.status
            elif isinstance(a, AckItems):
                for i in a.item_ids:
                    self._remove(i)
                    self.acked.append(i)
            elif isinstance(a, ReleaseClaims):
                for i in a.item_ids:
                    self.claims.pop(i, None)
            elif isinstance(a, DeadLetterItems):
                for d in a.items:
                    self.dead[d.id] = d.payload
                    self._remove(d.id)
            elif isinstance(a, ForgetExecutions):
                for tid in a.task_ids:
                    del self.records[tid]
            elif isinstance(a, UpdateExecution):
                rec = self.records[a.task_id]
                self.records[a.task_id] = rec.model_copy(update=a.changes)
            elif isinstance(a, Kill):
                rec = self.records[a.task_id]
                self.records[a.task_id] = rec.model_copy(update={"state": "TASK_KILLED",
                                                                 "finished_at": now})
            elif isinstance(a, DeleteOwnerData):
                self.records.clear()
                self.status = None
                self.claims.clear()
            elif isinstance(a, RedisOp):
                self._redis(a, now)

    def _remove(self, ident: str) -> None:
        self.items.pop(ident, None)
        self.claims.pop(ident, None)
        if ident in self.order:
            self.order.remove(ident)

    def _redis(self, op: RedisOp, now: datetime) -> None:
        batch = int(op.tag.rsplit(".", 1)[1])
        if op.op == "claim":
            if batch in self.processing:
                return
            taken: list[bytes] = []
            size = 0
            while self.order and len(taken) < op.count:
                payload = self.items[self.order[0]][0]
                grow = len(payload) + (op.separator_len if taken else 0)
                if taken and size + grow > op.max_bytes:
                    break
                taken.append(payload)
                size += grow
                ident = self.order.pop(0)
                del self.items[ident]
                if len(payload) > op.max_bytes:
                    break
            if taken:
                self.processing[batch] = taken
        elif op.op == "ack":
            for payload in self.processing.pop(batch, []):
                self.acked.append(payload.decode())
        elif op.op == "dead_letter":
            for n, payload in enumerate(self.processing.pop(batch, [])):
                self.dead[f"{batch}:{n}"] = payload
        elif op.op == "give_back":
            for payload in reversed(self.processing.pop(batch, [])):
                ident = f"back{next(self.revision)}"
                self.items[ident] = (payload, 0)
                self.order.insert(0, ident)

    # --- Mesos ---------------------------------------------------------------------------------
    def report(self, task_id: str, state: str, now: datetime, *, reason: str | None = None
               ) -> None:
        """The pump records a task's update (and acks an etcd batch on success)."""
        old = self.records[task_id]
        new = old.model_copy(update={
            "state": state, "reason": reason,
            "started_at": old.started_at or now,
            "finished_at": now if state not in ("TASK_RUNNING", "TASK_STARTING") else None,
            "exit_code": 0 if state == "TASK_FINISHED" else (1 if state == "TASK_FAILED"
                                                           else None)})
        for op in queue_record_ops(KEYS, "default", "q", old, new):
            assert isinstance(op, Delete)
            ident = op.key.rsplit("/", 1)[1]
            if ident in self.items:
                self.acked.append(ident)
            # The item goes; its claim stays until the planner releases it.
            self.items.pop(ident, None)
            if ident in self.order:
                self.order.remove(ident)
        self.records[task_id] = new

    def live_tasks(self) -> list[ExecutionRecord]:
        return [r for r in self.records.values()
                if r.state in ("LAUNCHING", "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING")]

    # --- invariants -----------------------------------------------------------------------------
    def check(self) -> None:
        assert self.queue is not None
        spec = self.queue.spec
        open_batches: dict[int, set[str]] = {}
        for rec in self.records.values():
            open_batches.setdefault(rec.index, set()).update(rec.message_ids or ())
        seen: set[str] = set()
        for rec in self.records.values():
            ids = rec.message_ids or []
            assert len(ids) == len(set(ids)), f"a message twice in one batch: {ids}"
        for ids in open_batches.values():
            assert not (ids & seen), "a message is in two batches"
            seen |= ids
        claimed = [i for i, v in self.claims.items() if parse_claim(v) and i in self.items]
        assert len(claimed) <= spec.max_concurrent * spec.batch_size
        in_processing = sum(len(v) for v in self.processing.values())
        assert in_processing <= spec.max_concurrent * spec.batch_size
        assert len(self.live_tasks()) <= spec.max_concurrent
