"""The Queue planner: `plan_queue(QueueInput) -> Plan`, pure (docs/architecture.md §8).

Model. A Queue takes messages from its source (etcd keys or a Redis list) in **batches**,
numbered 0, 1, 2, ... per incarnation (`status.nextBatch` never goes back), and runs one task
per batch: attempt 0, 1, ... of batch b is task `queue.<ns>.<name>.<uid>.<b>.<attempt>`, and
its execution record carries the batch's messages (etcd item ids, `messageIds`) and their count.
A batch is *open* from its claim until it is done: **succeeded** (an attempt finished; its
messages are acked, i.e. deleted from the source) or **dead** (its retry budgets are spent; its
messages move to the dead letter). Open batches are at most `maxConcurrent`, so claimed messages
are at most maxConcurrent x batchSize.

Claiming (no estimate: a message belongs to at most one open batch):
- etcd: a claim key per message (`queue-claims/<ns>/<queue>/<itemId>`, value `<uid>.<batch>`)
  is written in the same transaction as the launch intent, each only if absent (`ClaimItems`).
  A claim whose batch is not open (done and forgotten, or of an older incarnation) is stale:
  its message is pending again, and the claim is released first.
- Redis cannot join an etcd transaction, so a claim takes three steps, each repairable: the
  batch number is reserved in status (`claiming[b] = Claiming`), then one atomic script moves up
  to batchSize messages from the list's head into the batch's processing list (`RedisClaim`,
  idempotent: run again it returns what it moved), then the launch intent is written with them.
  A reservation whose processing list is missing is claimed again, or dropped when the list is
  empty; a processing list of no open or reserved batch is given back to the head of the list.

Retries. A batch that failed runs again as its next attempt, after the Job-style exponential
backoff counted over that batch's task failures; task failures beyond `backoffLimit`, or system
failures beyond `systemRetryLimit`, make it dead. A message larger than `maxBatchBytes` never
runs: it goes to the dead letter as MessageTooLarge.

Acks and counts. The task-event pump deletes an etcd batch's messages in the transaction that
records TASK_FINISHED (`controller/registry.py`); a Redis batch's processing list is deleted
here (`RedisAck`) once the record says FINISHED. A done batch whose messages are gone from the
source is *forgotten*: its records are deleted in the transaction that adds it to
`status.archived`, so every count is exact: succeeded and deadLettered are the archived totals
plus the done batches not yet forgotten, inFlight the messages of open batches (and of Redis
reservations), pending what the source holds unclaimed.

Deletion kills every task, acks what succeeded, gives the other claimed messages back to the
source, and only then deletes status and records (with the claims). The source and the dead
letter are never deleted.

A pass writes at most `OP_BUDGET` etcd operations (etcd refuses larger transactions), and asks
to be planned again at once when it left work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from controller.api import (
    BatchSummary,
    InvalidObject,
    Queue,
    QueueTotals,
)
from controller.reconcile.actions import (
    AckItems,
    Action,
    ClaimItems,
    DeadItem,
    DeadLetterItems,
    ForgetExecutions,
    ObjectKey,
    Observation,
    Plan,
    ReleaseClaims,
    UpdateExecution,
)
from controller.reconcile.backoff import failure_time, retry_at
from controller.reconcile.conditions import Wanted
from controller.reconcile.denial import THROTTLED, denial_message, throttled_condition
from controller.reconcile.queue_finish import FinishSteps
from controller.reconcile.queue_model import (
    BACKOFF_LIMIT_EXCEEDED,
    BATCH_DONE,
    INVALID,
    MESSAGE_TOO_LARGE,
    OP_BUDGET,
    RECENT_BATCHES,
    SOURCE_UNAVAILABLE,
    SUSPENDED_CONDITION,
    SYSTEM_RETRY_LIMIT_EXCEEDED,
    UNIT_BUDGET,
    Batch,
    Message,
    QueueInput,
    SourceView,
    batch_tag,
    claim_value,
    parse_claim,
    source_dict,
)
from controller.reconcile.queue_redis import RedisSteps
from controller.reconcile.taskid import is_dns_label, parse_task_id
from controller.reconcile.tasks import (
    SUPERSEDED,
    TASK_TIMEOUT,
    Outcome,
    came_back,
    current_incarnation,
    kill_actions,
    kill_superseded,
    may_be_running,
    needs_unreachable_mark,
    next_attempts,
    outcome,
    timeout_at,
)

__all__ = [
    "BACKOFF_LIMIT_EXCEEDED", "MESSAGE_TOO_LARGE", "SYSTEM_RETRY_LIMIT_EXCEEDED", "Message",
    "QueueInput", "SourceView", "batch_tag", "claim_value", "parse_claim", "plan_queue",
    "source_dict",
]

def plan_queue(inp: QueueInput) -> Plan:
    """Decide what to do for one Queue. Pure: same input, same plan."""
    if inp.now.tzinfo is None:
        raise ValueError("QueueInput.now must be timezone-aware")
    return _Planner(inp).plan()


class _Planner(RedisSteps, FinishSteps):
    def __init__(self, inp: QueueInput) -> None:
        self.inp = inp
        self.now = inp.now
        self.owner = ObjectKey("Queue", inp.namespace, inp.name)
        self.actions: list[Action] = []
        self.late: list[Action] = []  # source I/O after the writes (RedisOp)
        # etcd writes: `budget` for those committed with the status (what it counts: records
        # forgotten, messages dead-lettered without a task), `unit_budget` for the rest (a
        # batch's claims with its intent, acks, releases), which the executor may spread over
        # several transactions.
        self.budget = OP_BUDGET - 1  # the status write
        self.unit_budget = UNIT_BUDGET
        self.more = False  # work left for the next pass
        self.observations: list[Observation] = []
        # What this plan's own launches and moves change in the counts it writes.
        self.launched_active = 0
        self.launched_messages = 0
        self.taken_from_pending = 0
        self.wakeups: list[datetime] = []
        prev = inp.status
        self.uid = inp.uid if inp.uid is not None else (prev.uid if prev else None)
        self.prev = prev if prev is not None and prev.uid == self.uid else None
        self.archived = (self.prev.archived.model_copy() if self.prev is not None
                         else QueueTotals())
        self.recent = list(self.prev.recent_batches) if self.prev is not None else []
        self.claiming = dict(self.prev.claiming) if self.prev is not None else {}
        self.current = current_incarnation(inp.executions, self.owner, self.uid)
        # The status and the intents it counts may have been committed apart (a plan larger
        # than one transaction): a batch number with records is taken whatever the status says.
        self.next_batch = max([self.prev.next_batch if self.prev is not None else 0,
                               *(r.index + 1 for r in self.current)])
        self.actions += kill_superseded(inp.executions, self.owner, self.uid)
        current_ids = {r.task_id for r in self.current}
        self.superseded = [r for r in inp.executions if r.task_id not in current_ids]
        self.batches = self._batches()

    # --- helpers -----------------------------------------------------------------------------
    def _batches(self) -> dict[int, Batch]:
        out: dict[int, Batch] = {}
        for rec in sorted(self.current, key=lambda r: (r.index, r.attempt)):
            b = out.get(rec.index)
            if b is None:
                b = out[rec.index] = Batch(rec.index, [], tuple(rec.message_ids or ()),
                                            rec.message_count or len(rec.message_ids or ()))
            b.records.append(rec)
            result = outcome(rec)
            if result == Outcome.SUCCESS:
                b.succeeded = True
            elif result == Outcome.ACTIVE:
                b.active = True
            elif result == Outcome.TASK_FAILURE:
                b.task_failures += 1
                at = failure_time(rec, None)
                if at is not None and (b.last_task_failure is None or at > b.last_task_failure):
                    b.last_task_failure = at
            elif result == Outcome.SYSTEM_FAILURE:
                b.system_failures += 1
        return out

    def _task_actions(self, b: Batch, timeout: float | None) -> None:
        """Per-record upkeep: partition marks, kills of tasks that came back, timeouts."""
        for rec in b.records:
            if needs_unreachable_mark(rec):
                self.actions.append(UpdateExecution(rec.task_id, {"kill_reason": "Unreachable"}))
            elif came_back(rec):
                self.actions += kill_actions(rec, rec.kill_reason or SUPERSEDED, None)
            elif outcome(rec) == Outcome.ACTIVE and rec.kill_reason is None:
                at = timeout_at(rec, timeout)
                if at is not None and at <= self.now:
                    self.actions += kill_actions(rec, TASK_TIMEOUT, None)
                elif at is not None:
                    self.wakeups.append(at)
            elif outcome(rec) == Outcome.ACTIVE and rec.kill_reason is not None:
                self.actions += kill_actions(rec, rec.kill_reason, None)

    def _forget(self, b: Batch, result: Literal["Succeeded", "DeadLettered", "Vanished"],
                reason: str = "") -> None:
        ids = tuple(r.task_id for r in b.records)
        if not self._spend(len(ids)):
            return
        self.actions.append(ForgetExecutions(ids))
        failed = b.task_failures + b.system_failures
        self.archived.failed_attempts += failed
        if result == "Succeeded":
            self.archived.succeeded += b.count
        elif result == "DeadLettered":
            self.archived.dead_lettered += b.count
        latest = b.latest
        self.recent.append(BatchSummary(
            batch=b.index, task_id=latest.task_id, messages=b.count, result=result,
            reason=reason, attempts=len(b.records), exit_code=latest.exit_code,
            finished_at=latest.finished_at))
        self.recent = self.recent[-RECENT_BATCHES:]
        self.forgotten.add(b.index)
        if latest.started_at is not None and latest.finished_at is not None:
            self.observations.append(Observation(
                "batch_duration", value=(latest.finished_at - latest.started_at).total_seconds()))

    # --- the pass ----------------------------------------------------------------------------
    def plan(self) -> Plan:
        self.forgotten: set[int] = set()
        queue = self.inp.queue
        if queue is None:
            return self._plan_deleted()
        if self.uid is None:
            raise ValueError("QueueInput.uid is required for an existing object")
        problems = [f"metadata.{what}: {value!r} is not a DNS-1123 label"
                    for what, value in (("namespace", self.inp.namespace),
                                        ("name", self.inp.name)) if not is_dns_label(value)]
        if isinstance(queue, InvalidObject) or problems:
            # InvalidObject.message: "path: problem; ..." as every kind reports it.
            message = "; ".join(problems) if problems else (
                queue.message if isinstance(queue, InvalidObject) else "")
            return self._finish("Invalid", {INVALID: ("True", "InvalidSpec", message)})
        return self._plan_valid(queue)

    def _plan_valid(self, queue: Queue) -> Plan:
        spec = queue.spec
        view = self.inp.view
        wanted: dict[str, Wanted] = {}
        if not view.available:
            wanted[SOURCE_UNAVAILABLE] = ("True", "SourceError", view.error)
        if spec.suspend:
            wanted[SUSPENDED_CONDITION] = ("True", "QueueSuspended", "")
        # The open batches were claimed from another source than the spec's (it was edited):
        # they finish there, and nothing new is claimed until they are done.
        switching = (self.inp.source is not None
                     and source_dict(self.inp.source) != source_dict(spec.source))
        open_batches: list[Batch] = []
        retry: list[tuple[Batch, list[Message]]] = []
        for b in sorted(self.batches.values(), key=lambda x: x.index):
            self._task_actions(b, spec.task_timeout_seconds)
            dead = self._dead_reason(b, spec.backoff_limit, spec.system_retry_limit)
            if b.succeeded:
                self._settle_succeeded(b)
            elif dead is not None:
                self._settle_dead(b, dead)
            else:
                open_batches.append(b)
                if not b.active:
                    messages = self._messages(b)
                    if messages is None:
                        continue
                    if not messages:
                        self._forget(b, "Vanished", "the batch's messages left the source")
                        continue
                    retry.append((b, messages))
        self._release_stale_claims(open_batches)
        self._forget_superseded()
        self._settle_strays(open_batches)
        denial = self.inp.denial
        if self.inp.throttled is not None and not spec.suspend:
            wanted[THROTTLED] = throttled_condition(self.inp.throttled)
        if denial is not None:
            # Denied: no batch is claimed or retried (its messages stay where they are);
            # batches already running finish.
            wanted[INVALID] = ("True", denial.reason, denial_message(
                denial, any(b.active for b in open_batches)))
        elif not spec.suspend:
            for b, messages in retry:
                self._relaunch(queue, b, messages)
            open_count = len([b for b in open_batches if b.index not in self.forgotten])
            if view.available and not switching:
                if view.type == "etcd":
                    self._claim_etcd(queue, open_count)
                else:
                    self._claim_redis(queue, open_count)
        phase = "Suspended" if spec.suspend else "Invalid" if denial is not None and not any(
            b.active for b in open_batches) else (
            "Active" if any(not self.batches[b].succeeded for b in self.batches
                            if b not in self.forgotten) or self.claiming else "Idle")
        return self._finish(phase, wanted, spec.poll_interval_seconds
                            if view.type == "redis" else None)

    # --- done batches -------------------------------------------------------------------------
    def _settle_succeeded(self, b: Batch) -> None:
        for rec in b.records:
            # Another attempt of a batch that succeeded (an intent written off as never
            # launched that ran after all): its work is done.
            if outcome(rec) == Outcome.ACTIVE:
                self.actions += kill_actions(rec, BATCH_DONE, None)
        if b.active:
            return
        messages = self._messages(b)
        if messages is None:
            return
        if not messages:
            self._forget(b, "Succeeded")
        elif self.inp.view.type == "etcd":
            take = messages[: max(0, self.unit_budget // 2)]
            if take and self._spend_units(2 * len(take)):
                self.actions.append(AckItems(self.inp.namespace, self.inp.name,
                                             tuple(m.id for m in take)))
            self.more = True
        else:
            self.late.append(self._redis("ack", b.index))
            self.more = True

    def _settle_dead(self, b: Batch, reason: str) -> None:
        messages = self._messages(b)
        if messages is None:
            return
        if not messages:
            self._forget(b, "DeadLettered", reason)
            return
        latest = b.latest.task_id
        if self.inp.view.type == "etcd":
            take = messages[: max(0, self.unit_budget // 3)]
            if take and self._spend_units(3 * len(take)):
                self.actions.append(DeadLetterItems(
                    self.inp.namespace, self.inp.name,
                    tuple(DeadItem(m.id, m.payload, m.mod_revision) for m in take),
                    reason, latest, self.now, self._dead_prefix()))
        else:
            self.late.append(self._redis("dead_letter", b.index, reason=reason,
                                     execution=latest, at=self.now))
        self.more = True

    def _dead_prefix(self) -> str | None:
        queue = self.inp.queue
        dead = queue.spec.dead_letter if isinstance(queue, Queue) else None
        return dead.key if dead is not None else None

    def _forget_superseded(self) -> None:
        """Records of an older incarnation (the Queue was deleted and created again before
        its cleanup) go once their tasks ended; their Redis processing lists are strays,
        given back by `_settle_strays`."""
        ended = tuple(r.task_id for r in self.superseded if not may_be_running(r))
        if ended and self._spend(len(ended)):
            self.actions.append(ForgetExecutions(ended))

    def _release_stale_claims(self, open_batches: Sequence[Batch]) -> None:
        view = self.inp.view
        if view.type != "etcd" or not view.available:
            return
        live = {claim_value(self.uid or 0, b.index) for b in open_batches
                if b.index not in self.forgotten}
        live |= {claim_value(self.uid or 0, b.index) for b in self.batches.values()
                 if b.index not in self.forgotten and b.succeeded}
        # An older incarnation's task still running holds its messages until it ends (its
        # success acks them; anything else leaves them to be claimed again).
        live |= {claim_value(parts.uid, parts.index) for rec in self.superseded
                 if may_be_running(rec) and (parts := parse_task_id(rec.task_id)) is not None}
        stale = sorted(i for i, v in view.claims.items() if v not in live)
        take = stale[: self.unit_budget]
        if take and self._spend_units(len(take)):
            self.actions.append(ReleaseClaims(self.inp.namespace, self.inp.name, tuple(take)))
        if len(take) < len(stale):
            self.more = True

    # --- launches -----------------------------------------------------------------------------
    def _relaunch(self, queue: Queue, b: Batch, messages: list[Message]) -> None:
        at = retry_at(queue.spec.backoff, b.task_failures, b.last_task_failure)
        if at is not None and at > self.now:
            self.wakeups.append(at)
            return
        if not self._spend_units(1):
            return
        attempt = next_attempts(b.records).get(b.index, 0)
        ids = tuple(m.id for m in messages) if self.inp.view.type == "etcd" else None
        self._launch(queue, b.index, attempt, messages, ids)

    def _cut(self, queue: Queue, messages: Sequence[Message]) -> tuple[list[Message], bool]:
        """The next batch from `messages` (oldest first): up to batchSize, cut before
        maxBatchBytes; (batch, too_large) where too_large means the first message alone is
        larger than maxBatchBytes."""
        spec = queue.spec
        sep = len(spec.batch_separator.encode())
        if messages and len(messages[0].payload) > spec.max_batch_bytes:
            return [messages[0]], True
        out: list[Message] = []
        size = 0
        for m in messages[: spec.batch_size]:
            grow = len(m.payload) + (sep if out else 0)
            if size + grow > spec.max_batch_bytes:
                break
            out.append(m)
            size += grow
        return out, False

    def _claim_etcd(self, queue: Queue, open_count: int) -> None:
        # The view's watch may not have seen the claims of the latest batches yet; the records
        # (written through) say which messages they hold.
        held = {i for b in self.batches.values() if b.index not in self.forgotten
                for i in b.message_ids}
        head = [m for m in self.inp.view.head if m.id not in held]
        assert self.uid is not None
        while head and open_count < queue.spec.max_concurrent:
            batch, too_large = self._cut(queue, head)
            if too_large:
                if not self._spend(3):
                    return
                m = batch[0]
                self.actions.append(DeadLetterItems(
                    self.inp.namespace, self.inp.name, (DeadItem(m.id, m.payload,
                                                                 m.mod_revision),),
                    MESSAGE_TOO_LARGE, "", self.now, self._dead_prefix(), counted=True))
                self.archived.dead_lettered += 1
                self.taken_from_pending += 1
                head = head[1:]
                continue
            if not self._spend_units(len(batch) + 1):
                return
            index = self.next_batch
            self.next_batch += 1
            ids = tuple(m.id for m in batch)
            self.actions.append(ClaimItems(self.inp.namespace, self.inp.name,
                                           claim_value(self.uid, index), ids))
            self._launch(queue, index, 0, batch, ids)
            self.taken_from_pending += len(batch)
            head = head[len(batch):]
            open_count += 1
        if head and open_count < queue.spec.max_concurrent:
            self.more = True
