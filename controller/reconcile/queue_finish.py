"""The end of a Queue planning pass: the status it writes (exact counts, conditions) and
when to plan again; and the plan of a deleted Queue (kill, ack, give back, then forget).
Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from controller.api import Queue, QueueStatus
from controller.reconcile.actions import AckItems, DeleteOwnerData, Plan, WriteStatus
from controller.reconcile.conditions import Wanted, update_conditions
from controller.reconcile.queue_base import PlannerState
from controller.reconcile.queue_model import (
    CONDITION_ORDER,
    OLDEST_REFRESH_SECONDS,
    PLURAL,
    Batch,
    SourceView,
    claim_value,
    source_dict,
    unavailable_retry,
)
from controller.reconcile.tasks import DELETED, Outcome, kill_actions, may_be_running, outcome


class FinishSteps(PlannerState):
    # --- deletion -----------------------------------------------------------------------------
    def _plan_deleted(self) -> Plan:
        """Kill every task; once none may run, ack what succeeded, give the rest back, then
        delete status, records and claims."""
        records = list(self.inp.executions)
        for rec in records:
            if may_be_running(rec):
                self.actions += kill_actions(rec, DELETED, None)
        if any(may_be_running(r) for r in records):
            return Plan(tuple(self.actions))
        view = self.inp.view
        if self.inp.status is None and not records:
            return Plan()
        pending_io = False
        if view.available and self.uid is not None:
            give_back: set[int] = set()
            for b in self.batches.values():
                messages = self._messages(b)
                if b.succeeded and messages:
                    pending_io = True
                    if view.type == "etcd":
                        take = messages[: max(0, self.unit_budget // 2)]
                        if take and self._spend_units(2 * len(take)):
                            self.actions.append(AckItems(self.inp.namespace, self.inp.name,
                                                         tuple(m.id for m in take)))
                    else:
                        self.late.append(self._redis("ack", b.index))
                elif not b.succeeded and view.type == "redis" and messages:
                    give_back.add(b.index)
            if view.type == "redis":
                give_back |= {batch for batch in set(self.claiming) | set(view.strays)
                              if batch not in self.batches and (
                                  view.processing.get(batch) is not None
                                  or batch in view.strays)}
            # Newest first: each give-back pushes to the head, so the oldest ends up first.
            for batch in sorted(give_back, reverse=True):
                pending_io = True
                self.late.append(self._redis("give_back", batch))
        elif not view.available and self.inp.source is not None and (
                self.batches or self.claiming or view.type == "redis"):
            # Claimed messages may still be in the source: wait for it rather than strand
            # them (an etcd queue without open batches has only claims, deleted below).
            return Plan(tuple(self.actions),
                        requeue_after=unavailable_retry(self.inp.status, self.now))
        if pending_io:
            return Plan((*self.actions, *self.late), requeue_after=0.0)
        return Plan((DeleteOwnerData(PLURAL, self.inp.namespace, self.inp.name),))

    # --- status -------------------------------------------------------------------------------
    def _finish(self, phase: str, wanted: Mapping[str, Wanted],
                poll: float | None = None) -> Plan:
        view = self.inp.view
        prev = self.inp.status
        live = [b for i, b in self.batches.items() if i not in self.forgotten]
        succeeded = self.archived.succeeded + sum(b.count for b in live if b.succeeded)
        dead = self.archived.dead_lettered + sum(
            b.count for b in live if not b.succeeded and not b.active
            and self._dead_reason_any(b))
        failed = self.archived.failed_attempts + sum(
            b.task_failures + b.system_failures for b in live)
        in_flight = sum(b.count for b in live if not b.succeeded
                        and not self._dead_reason_any(b))
        if view.type == "redis":
            in_flight += sum(len(view.processing.get(b) or ()) for b in self.claiming)
        active = sum(1 for rec in self.current
                     if outcome(rec) == Outcome.ACTIVE) + self.launched_active
        in_flight += self.launched_messages
        oldest_since = view.oldest_seen if view.available else (
            prev.oldest_pending_since if prev is not None else None)
        pending = view.unclaimed if view.available else (prev.pending if prev else 0)
        if view.type == "etcd" and view.available:
            open_values = {claim_value(self.uid or 0, b.index) for b in live}
            pending += sum(1 for i, v in view.claims.items()
                           if v not in open_values and i in view.items)
            # Messages of open batches whose claims the view has not seen yet.
            pending -= sum(1 for b in live for i in b.message_ids
                           if i in view.items and i not in view.claims)
            pending = max(0, pending - self.taken_from_pending)
        oldest_seconds: int | None = None
        if oldest_since is not None and pending:
            oldest_seconds = max(0, int((self.now - oldest_since).total_seconds()))
            if (prev is not None and prev.oldest_pending_seconds is not None
                    and prev.oldest_pending_since == oldest_since
                    and abs(oldest_seconds - prev.oldest_pending_seconds)
                    < OLDEST_REFRESH_SECONDS):
                oldest_seconds = prev.oldest_pending_seconds  # not worth a write
            self.wakeups.append(self.now + timedelta(seconds=OLDEST_REFRESH_SECONDS))
        if not pending:
            oldest_since = None
        source = self.inp.source
        status = QueueStatus(
            observed_revision=self.inp.spec_revision, uid=self.uid, phase=phase,
            conditions=update_conditions(prev.conditions if prev else [], wanted,
                                         order=CONDITION_ORDER, keep=(), now=self.now),
            pending=pending, in_flight=in_flight, succeeded=succeeded, dead_lettered=dead,
            failed_attempts=failed, active=active, oldest_pending_seconds=oldest_seconds,
            oldest_pending_since=oldest_since, next_batch=self.next_batch,
            claiming=self.claiming, source=source_dict(source) if source is not None else None,
            archived=self.archived, recent_batches=self.recent,
            last_poll_time=(view.polled_at if view.polled_at is not None
                            else (prev.last_poll_time if prev else None)))
        actions = [*self.actions]
        if status != prev:
            actions.append(WriteStatus(status))
        actions += self.late
        requeue = self._requeue(poll, view)
        return Plan(tuple(actions), status if status != prev else None, requeue,
                    tuple(self.observations))

    def _dead_reason_any(self, b: Batch) -> bool:
        queue = self.inp.queue
        if not isinstance(queue, Queue):
            return False
        return self._dead_reason(b, queue.spec.backoff_limit,
                                 queue.spec.system_retry_limit) is not None

    def _requeue(self, poll: float | None, view: SourceView) -> float | None:
        if self.more:
            return 0.0
        delays = [max(0.0, (at - self.now).total_seconds()) for at in self.wakeups]
        if poll is not None:
            delays.append(poll)
        if not view.available:
            delays.append(unavailable_retry(self.inp.status, self.now))
        return min(delays) if delays else None


