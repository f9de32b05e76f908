"""The executor's transactions for a Queue's plans, on the in-memory etcd: a batch's claims
travel with its launch intent, never apart; what the status counts travels with the status;
a plan larger than one transaction is cut between batches, the status last."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from controller.api import ExecutionRecord, QueueStatus, TaskTemplate
from controller.executor import MAX_TXN_OPS, Executor, Snapshot, StalePlan
from controller.mesos.backend import LaunchRequest
from controller.reconcile import Launch, ObjectKey, Plan, WriteStatus
from controller.reconcile.actions import ClaimItems, DeadItem, DeadLetterItems, ForgetExecutions
from controller.store import MemoryEtcd, Store

NOW = datetime(2026, 11, 29, tzinfo=UTC)
OWNER = ObjectKey("Queue", "default", "q")
TEMPLATE = TaskTemplate.model_validate({"command": "true"})


class Backend:
    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, requests: Iterable[LaunchRequest]) -> None:
        self.launched += [r.task_id for r in requests]

    def cancel(self, task_id: str) -> bool:
        return False


def batch(index: int, size: int) -> tuple[ClaimItems, Launch]:
    ids = tuple(f"b{index}-{n}" for n in range(size))
    return (ClaimItems("default", "q", f"7.{index}", ids),
            Launch(f"queue.default.q.7.{index}.0", OWNER, index, 0, TEMPLATE,
                   record={"message_ids": list(ids), "message_count": size}))


def test_claims_and_their_intent_share_a_transaction_and_the_status_comes_last() -> None:
    store = MemoryEtcd().store()
    backend = Backend()
    executor = Executor(store, backend)  # type: ignore[arg-type]
    actions = [a for i in range(3) for a in batch(i, 100)]
    plan = Plan((*actions, WriteStatus(QueueStatus(uid=7, next_batch=3))))
    prep = executor._prepare(plan, Snapshot("queues", "default", "q", 0, {}), NOW)
    txns = prep.transactions()
    assert len(txns) == 3 and all(len(t) <= MAX_TXN_OPS for t in txns)
    for n, txn in enumerate(txns):
        keys = [op.key for op, _, _ in txn]
        assert sum(k.endswith(f"/queue.default.q.7.{n}.0") for k in keys) == 1
        assert sum(f"/queue-claims/default/q/b{n}-" in k for k in keys) == 100
    assert txns[-1][-1][0].key == store.keys.status("queues", "default", "q")
    out = executor.apply(plan, Snapshot("queues", "default", "q", 0, {}), NOW)
    assert backend.launched == [f"queue.default.q.7.{i}.0" for i in range(3)]
    claims, _ = store.list_raw(store.keys.queue_claims_prefix("default", "q"))
    assert len(claims) == 300 and out.status is not None


def test_a_lost_claim_fails_its_batch_and_the_status_but_keeps_the_batches_before() -> None:
    store = MemoryEtcd().store()
    store.put_raw(store.keys.queue_claim("default", "q", "b1-5"), b"7.99")  # held already
    backend = Backend()
    executor = Executor(store, backend)  # type: ignore[arg-type]
    actions = [a for i in range(2) for a in batch(i, 100)]
    plan = Plan((*actions, WriteStatus(QueueStatus(uid=7, next_batch=2))))
    with pytest.raises(StalePlan):
        executor.apply(plan, Snapshot("queues", "default", "q", 0, {}), NOW)
    assert backend.launched == []
    assert store.get_raw(store.keys.execution("queues", "default", "q",
                                              "queue.default.q.7.0.0")) is not None
    assert store.get_raw(store.keys.execution("queues", "default", "q",
                                              "queue.default.q.7.1.0")) is None
    assert store.get_raw(store.keys.status("queues", "default", "q")) is None


def test_records_forgotten_and_messages_counted_travel_with_the_status() -> None:
    store = MemoryEtcd().store()
    key = store.keys.execution("queues", "default", "q", "queue.default.q.7.0.0")
    rev = store.put_raw(key, ExecutionRecord(task_id="queue.default.q.7.0.0", index=0,
                                             attempt=0, state="TASK_FINISHED"
                                             ).model_dump_json().encode())
    item = store.keys.queue_item("default", "q", "big")
    item_rev = store.put_raw(item, b"x" * 10)
    rec = ExecutionRecord(task_id="queue.default.q.7.0.0", index=0, attempt=0,
                          state="TASK_FINISHED")
    executor = Executor(store, Backend())  # type: ignore[arg-type]
    plan = Plan((ForgetExecutions(("queue.default.q.7.0.0",)),
                 DeadLetterItems("default", "q", (DeadItem("big", b"x" * 10, item_rev),),
                                 "MessageTooLarge", "", NOW, counted=True),
                 WriteStatus(QueueStatus(uid=7, dead_lettered=1))))
    snap = Snapshot("queues", "default", "q", 0, {"queue.default.q.7.0.0": (rec, rev)})
    prep = executor._prepare(plan, snap, NOW)
    assert prep.units == [] and len(prep.transactions()) == 1
    out = executor.apply(plan, snap, NOW)
    assert out.forgotten == ("queue.default.q.7.0.0",)
    assert store.get_raw(key) is None and store.get_raw(item) is None
    dead = store.get_raw(store.keys.queue_dead_prefix("default", "q") + "big")
    assert dead is not None and b"MessageTooLarge" in dead[0]


def test_claims_without_their_launch_are_refused() -> None:
    store: Store = MemoryEtcd().store()
    executor = Executor(store, Backend())  # type: ignore[arg-type]
    claim, _ = batch(0, 2)
    with pytest.raises(ValueError, match="followed by its launch"):
        executor.apply(Plan((claim,)), Snapshot("queues", "default", "q", 0, {}), NOW)
