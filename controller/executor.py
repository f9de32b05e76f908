"""The one place where a reconciliation Plan touches the world: etcd writes through the store,
launches and kills through the Mesos backend.

Order matters for crash safety, so it is fixed here and nowhere else:
1. every etcd write the plan asks for — kill reasons (UpdateExecution), launch intents
   (ExecutionRecord LAUNCHING), child objects (CreateObject) and the status — is committed as
   compare-and-swap transactions: an intent or a child only if its key does not exist yet, a
   record or the status only if it is still at the revision the plan was made from. A
   conflict means the plan was made from stale state: nothing of it is sent to Mesos and the
   key is planned again. A child and the status that records it share one transaction.
2. only then are kills and launches handed to Mesos, so a crash at any point leaves an intent
   in etcd for every task that may exist, and an attempt id is never launched twice (after a
   restart the intent is reconciled with Mesos instead of launched again).
3. deletions last: spec keys (the object's own on expiry, or children an owner deletes;
   compare-and-swap: a user who edited one meanwhile keeps it), then the status and execution
   records.
An action type this module does not handle is a type error (`assert_never`), never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, assert_never

import structlog

from controller import metrics
from controller.api import LAUNCHING, ExecutionRecord, StatusBase, encode_model
from controller.mesos.backend import LaunchRequest, MesosBackend
from controller.queue_ops import etcd_ops
from controller.reconcile import (
    CreateObject,
    DeleteObject,
    DeleteOwnerData,
    Kill,
    Launch,
    Plan,
    UpdateExecution,
    WriteStatus,
)
from controller.reconcile.actions import (
    AckItems,
    ClaimItems,
    DeadLetterItems,
    ForgetExecutions,
    RedisOp,
    ReleaseClaims,
)
from controller.runtime import Fence
from controller.store import Conflict, Delete, Expect, Put, Store

log = structlog.get_logger("docket.executor")

# etcd refuses transactions of more than 128 operations by default (--max-txn-ops).
MAX_TXN_OPS = 120

KILL_REASON_LABELS = {"TaskTimeout": "timeout", "DeadlineExceeded": "deadline",
                      "Suspended": "suspended", "Deleted": "deleted"}


# A write and its condition, with what it writes when the caches must hear of it (a record or
# the status; None for a child object, which its own kind's informer will see).
@dataclass(frozen=True)
class Forgotten:
    """An execution record deleted by the plan (a Queue's done batch)."""

    task_id: str


_Op = tuple[Put | Delete, Expect | None, ExecutionRecord | StatusBase | Forgotten | None]


@dataclass
class _Prepared:
    """A plan taken apart: the writes to commit first, then what to do with Mesos.

    The writes are `units`, each committed whole (a launch intent with the claims of its
    batch), then `final`: what the status describes, committed in one transaction with it
    (children created, records deleted as they are counted). A plan's writes travel in one
    transaction when they fit; otherwise units are packed into transactions in order, and
    `final` comes last."""

    units: list[list[_Op]] = field(default_factory=list)
    final: list[_Op] = field(default_factory=list)
    launches: list[Launch] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    delete_objects: list[DeleteObject] = field(default_factory=list)
    delete_data: DeleteOwnerData | None = None
    source_ops: list[RedisOp] = field(default_factory=list)

    @property
    def launch_ids(self) -> tuple[str, ...]:
        return tuple(a.task_id for a in self.launches)

    @property
    def ops(self) -> list[_Op]:
        return [op for unit in self.units for op in unit] + self.final

    def transactions(self) -> list[list[_Op]]:
        """The writes cut into transactions of at most MAX_TXN_OPS operations, no unit cut
        (a unit larger than that is a transaction of its own), `final` in the last."""
        if len(self.final) > MAX_TXN_OPS:
            raise ValueError(f"{len(self.final)} writes must be committed with the status, "
                             f"more than one transaction may carry ({MAX_TXN_OPS})")
        txns: list[list[_Op]] = []
        for unit in self.units:
            if not txns or len(txns[-1]) + len(unit) > MAX_TXN_OPS:
                txns.append([])
            txns[-1].extend(unit)
        if self.final:
            if not txns or len(txns[-1]) + len(self.final) > MAX_TXN_OPS:
                txns.append([])
            txns[-1].extend(self.final)
        return txns


class StalePlan(Exception):
    """A compare-and-swap write lost: the plan was made from state that changed since."""


class NotLeader(Exception):
    """This process does not (or no longer) hold the controller lease: it must not write."""


def fenced_commit(store: Store, fence: Callable[[], Fence | None] | None,
                  ops: Sequence[Put | Delete], expect: Sequence[Expect] = ()) -> int:
    """`store.commit`, plus, when `fence` is given, the condition that the leader key is
    still the one this process created (so a deposed leader's write fails in etcd itself).
    Raises StalePlan on a conflict, NotLeader when not leading."""
    conditions = list(expect)
    token = None
    if fence is not None:
        token = fence()
        if token is None:
            raise NotLeader("not the leader")
        conditions.append(Expect(token.key, token.revision))
    try:
        return store.commit(ops, conditions)
    except Conflict as exc:
        if token is not None:
            found = store.get_raw(token.key)
            if found is None or found[1] != token.revision:
                raise NotLeader("lost the controller lease") from None
        raise StalePlan(str(exc)) from None


@dataclass(frozen=True)
class Snapshot:
    """What a plan was made from: the revisions its writes must still find."""

    plural: str
    namespace: str
    name: str
    status_revision: int
    """mod_revision of the status key, 0 when there is none."""
    executions: Mapping[str, tuple[ExecutionRecord, int]]
    """task id -> (record, mod_revision)."""


@dataclass
class Applied:
    """What applying a plan did (for the caller's bookkeeping and tests)."""

    revision: int = 0
    launched: tuple[str, ...] = ()
    killed: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    written: int = 0
    records: list[tuple[int, ExecutionRecord]] = field(default_factory=list)
    """Every execution record written, with the revision it now has."""
    status: tuple[int, StatusBase] | None = None
    owner_data_deleted: bool = False
    forgotten: tuple[str, ...] = ()
    """Execution records deleted (at `revision`)."""


class Executor:
    """Applies plans. `on_launch(task_ids)` is called before the intents of those launches are
    written, and `on_launch_dropped(task_ids)` if they then do not reach the backend: the
    controller leaves what it is about to hand over out of reconciliation (Mesos would answer
    that it does not know such a task, and it would be written off while its launch goes out),
    and puts back what it dropped."""

    def __init__(self, store: Store, backend: MesosBackend, *,
                 on_launch: Callable[[Sequence[str]], None] | None = None,
                 on_launch_dropped: Callable[[Sequence[str]], None] | None = None,
                 on_written: Callable[[Snapshot, int, Sequence[ExecutionRecord],
                                       StatusBase | None], None] | None = None,
                 fence: Callable[[], Fence | None] | None = None,
                 run_source: Callable[[RedisOp], None] | None = None,
                 prepare_launch: Sequence[Callable[[LaunchRequest], LaunchRequest]] = ()
                 ) -> None:
        self.store = store
        # What the launch needs beyond its recorded intent, added only on its way to Mesos
        # and never written anywhere: the namespace's Mesos role, secret values.
        # The sequence is kept, not copied: the manager adds to it as admission sources start.
        self._prepare_launch = prepare_launch
        # A Queue's Redis operations (controller/queues/sources.py); None where no Queue runs.
        self._run_source = run_source
        self.backend = backend
        self._on_launch = on_launch
        self._on_launch_dropped = on_launch_dropped
        # Told of every committed write before anything reaches Mesos, so a cache of the
        # records already holds an intent when the first update of its task comes back.
        self._on_written = on_written
        self._fence = fence

    def apply(self, plan: Plan, snap: Snapshot, now: datetime, *,
              logger: Any = log) -> Applied:
        prep = self._prepare(plan, snap, now)
        out = Applied()
        ids = prep.launch_ids
        if ids and self._on_launch is not None:
            self._on_launch(ids)
        try:
            self._commit(prep, out, snap)
            # Launches before kills: a kill whose write fails must not strand intents that
            # are already in etcd (they would wait for the next reconciliation with Mesos).
            self._launch(prep.launches)
        except BaseException:
            # Intents already written without their launch stay LAUNCHING until the next
            # reconciliation with Mesos reports them unknown (written off as NeverLaunched and
            # launched again; no failure).
            if ids and self._on_launch_dropped is not None:
                self._on_launch_dropped(ids)
            raise
        self._finish(prep, snap, out, now, logger)
        return out

    def apply_many(self, items: Sequence[tuple[Plan, Snapshot, Any]], now: datetime
                   ) -> list[Applied | BaseException]:
        """`apply` for plans of different objects (each item: plan, snapshot, logger), with
        their writes committed together and their launches handed over together. The order
        of steps of each plan is that of `apply`; one plan's failure is its own (its outcome
        is the exception `apply` would have raised)."""
        preps = [self._prepare(plan, snap, now) for plan, snap, _ in items]
        outcomes: list[Applied | BaseException] = [Applied() for _ in items]
        together = [i for i, p in enumerate(preps) if len(p.ops) <= MAX_TXN_OPS]
        for i in range(len(items)):
            if len(preps[i].ops) > MAX_TXN_OPS:  # written in several steps: on its own
                plan, snap, logger = items[i]
                try:
                    outcomes[i] = self.apply(plan, snap, now, logger=logger)
                except Exception as exc:
                    outcomes[i] = exc
        ids = [tid for i in together for tid in preps[i].launch_ids]
        if ids and self._on_launch is not None:
            self._on_launch(ids)
        launched: list[int] = []
        try:
            results = self._commit_many([preps[i].ops for i in together])
            for i, result in zip(together, results, strict=True):
                if isinstance(result, BaseException):
                    outcomes[i] = result
                    if preps[i].launch_ids and self._on_launch_dropped is not None:
                        self._on_launch_dropped(preps[i].launch_ids)
                    continue
                out = outcomes[i]
                assert isinstance(out, Applied)
                self._written(preps[i].ops, result, out, items[i][1])
                launched.append(i)
            self._launch([a for i in launched for a in preps[i].launches])
        except BaseException as exc:
            dropped = [tid for i in launched for tid in preps[i].launch_ids]
            if dropped and self._on_launch_dropped is not None:
                self._on_launch_dropped(dropped)
            if not isinstance(exc, Exception):
                raise
            for i in launched:
                outcomes[i] = exc
            return outcomes
        for i in launched:
            out = outcomes[i]
            assert isinstance(out, Applied)
            try:
                self._finish(preps[i], items[i][1], out, now, items[i][2])
            except Exception as exc:
                outcomes[i] = exc
        return outcomes

    # --- pieces ------------------------------------------------------------------------------
    def _prepare(self, plan: Plan, snap: Snapshot, now: datetime) -> _Prepared:
        keys = self.store.keys
        prep = _Prepared()
        status_op: _Op | None = None
        updated: dict[str, ExecutionRecord] = {}
        claims: list[_Op] | None = None  # a batch's claims, waiting for its launch intent
        for action in plan.actions:
            if claims is not None and not isinstance(action, Launch):
                raise ValueError("a batch's claims must be followed by its launch")
            if isinstance(action, UpdateExecution):
                rec, rev = self._current(action.task_id, snap, updated)
                new = rec.model_copy(update=action.changes)
                updated[action.task_id] = new
                key = keys.execution(snap.plural, snap.namespace, snap.name, action.task_id)
                prep.units.append([(Put(key, encode_model(new)), Expect(key, rev), new)])
            elif isinstance(action, Launch):
                record = ExecutionRecord(task_id=action.task_id, index=action.index,
                                         attempt=action.attempt, state=LAUNCHING,
                                         submitted_at=now, **action.record)
                key = keys.execution(snap.plural, snap.namespace, snap.name, action.task_id)
                intent: _Op = (Put(key, encode_model(record)), Expect(key, 0), record)
                prep.units.append([*(claims or []), intent])
                claims = None
                prep.launches.append(action)
            elif isinstance(action, WriteStatus):
                status_op = self._status_put(action.status, snap)
            elif isinstance(action, Kill):
                prep.kills.append(action)
            elif isinstance(action, CreateObject):
                key = keys.object(action.plural, action.namespace, action.name)
                prep.final.append((Put(key, encode_model(action.document)), Expect(key, 0),
                                   None))
            elif isinstance(action, DeleteObject):
                prep.delete_objects.append(action)
            elif isinstance(action, DeleteOwnerData):
                prep.delete_data = action
            elif isinstance(action, ClaimItems):
                claims = [(op, expect, None) for unit in etcd_ops(keys, action)
                          for op, expect in unit]
            elif isinstance(action, AckItems | ReleaseClaims | DeadLetterItems):
                units: list[list[_Op]] = [[(op, expect, None) for op, expect in unit]
                                          for unit in etcd_ops(keys, action)]
                if isinstance(action, DeadLetterItems) and action.counted:
                    prep.final += [op for unit in units for op in unit]
                else:
                    prep.units += units
            elif isinstance(action, ForgetExecutions):
                for tid in action.task_ids:
                    _, rev = self._current(tid, snap, updated)
                    key = keys.execution(snap.plural, snap.namespace, snap.name, tid)
                    prep.final.append((Delete(key), Expect(key, rev), Forgotten(tid)))
            elif isinstance(action, RedisOp):
                prep.source_ops.append(action)
            else:
                assert_never(action)
        if claims is not None:
            raise ValueError("a batch's claims must be followed by its launch")
        if status_op is not None:
            prep.final.append(status_op)  # last: it describes the intents written before it
        return prep

    def _launch(self, launches: Sequence[Launch]) -> None:
        ready: list[LaunchRequest] = []
        failed: list[str] = []
        for a in launches:
            try:
                ready.append(self._prepared(LaunchRequest(
                    task_id=a.task_id, template=a.template, extra_env=a.env,
                    health_check=a.health_check)))
            except Exception:
                log.exception("cannot prepare a launch; it is written off as never launched",
                              task_id=a.task_id)
                failed.append(a.task_id)
        if ready:
            self.backend.launch(ready)
        if failed:
            # Its intent is committed: Mesos answers TASK_UNKNOWN for it, the record is
            # written off (no failure) and the object plans it again.
            if self._on_launch_dropped is not None:
                self._on_launch_dropped(failed)
            self.backend.reconcile([(task_id, None) for task_id in failed])

    def _prepared(self, request: LaunchRequest) -> LaunchRequest:
        for prepare in self._prepare_launch:
            request = prepare(request)
        return request

    def _finish(self, prep: _Prepared, snap: Snapshot, out: Applied, now: datetime,
                logger: Any) -> None:
        """What follows the launches: kills, then deletions."""
        keys = self.store.keys
        out.launched = prep.launch_ids
        for tid in out.launched:
            logger.info("task launch requested", task_id=tid)
        revisions = {rec.task_id: (rec, rev) for rev, rec in out.records}
        for kill in prep.kills:
            self._kill(kill, snap, revisions, out, now, logger)
        for op in prep.source_ops:
            self._source(op, logger)
        for d in prep.delete_objects:
            key = keys.object(d.plural, d.namespace, d.name)
            self._guarded_commit([Delete(key)], [Expect(key, d.expected_mod_revision)])
            logger.info("object deleted", plural=d.plural, object=d.name,
                        reason=d.reason or "expired")
        if prep.delete_data is not None:
            d2 = prep.delete_data
            self._guarded_commit([
                Delete(keys.status(d2.plural, d2.namespace, d2.name)),
                Delete(keys.executions_prefix(d2.plural, d2.namespace, d2.name), prefix=True),
                # A Queue's claims go with it (its claimed messages were given back).
                *([Delete(keys.queue_claims_prefix(d2.namespace, d2.name), prefix=True)]
                  if d2.plural == "queues" else [])])
            out.owner_data_deleted = True
            logger.info("status and execution records deleted")

    def _source(self, op: RedisOp, logger: Any) -> None:
        """A Queue's Redis operation. A failure is logged, not raised: every operation is
        idempotent and the planner asks for it again while the source says it is needed."""
        if self._run_source is None:
            logger.error("no queue source runner; cannot run", op=op.op, tag=op.tag)
            return
        try:
            self._run_source(op)
        except Exception as exc:
            logger.warning("queue source operation failed; it is retried", op=op.op,
                           tag=op.tag, error=str(exc))

    @staticmethod
    def _current(task_id: str, snap: Snapshot, updated: Mapping[str, ExecutionRecord]
                 ) -> tuple[ExecutionRecord, int]:
        found = snap.executions.get(task_id)
        if found is None:
            raise StalePlan(f"no execution record {task_id} to update")
        rec = updated.get(task_id, found[0])
        return rec, found[1]

    def _guarded_commit(self, ops: Sequence[Put | Delete], expect: Sequence[Expect] = ()
                        ) -> int:
        """Commit, fenced: the transaction also requires that this process still leads."""
        return fenced_commit(self.store, self._fence, ops, expect)

    def _status_put(self, status: StatusBase, snap: Snapshot) -> _Op:
        key = self.store.keys.status(snap.plural, snap.namespace, snap.name)
        return Put(key, encode_model(status)), Expect(key, snap.status_revision), status

    def _commit(self, prep: _Prepared, out: Applied, snap: Snapshot) -> None:
        for chunk in prep.transactions():
            # Earlier chunks stand (each is a complete, valid step: intents without their
            # launches are written off by the next reconciliation); the rest is planned again.
            revision = self._guarded_commit([p for p, _, _ in chunk],
                                            [e for _, e, _ in chunk if e is not None])
            self._written(chunk, revision, out, snap)

    def _commit_many(self, txns: Sequence[Sequence[_Op]]) -> list[int | Exception]:
        """Each list of ops as one fenced transaction, all sent together: for each, its
        revision, or StalePlan / NotLeader / the etcd error it met."""
        if not txns:
            return []
        token = None
        fence: list[Expect] = []
        if self._fence is not None:
            token = self._fence()
            if token is None:
                return [NotLeader("not the leader") for _ in txns]
            fence = [Expect(token.key, token.revision)]
        results = self.store.commit_many([([p for p, _, _ in ops],
                                           [e for _, e, _ in ops if e is not None] + fence)
                                          for ops in txns])
        out: list[int | Exception] = []
        lost: bool | None = None
        for result in results:
            if isinstance(result, Conflict):
                if token is not None and lost is None:
                    found = self.store.get_raw(token.key)
                    lost = found is None or found[1] != token.revision
                out.append(NotLeader("lost the controller lease") if lost
                           else StalePlan(str(result)))
            else:
                out.append(result)
        return out

    def _written(self, ops: Sequence[_Op], revision: int, out: Applied, snap: Snapshot
                 ) -> None:
        out.revision = revision
        out.written += len(ops)
        records = []
        status = None
        for _, _, model in ops:
            if isinstance(model, ExecutionRecord):
                records.append(model)
                out.records.append((revision, model))
            elif isinstance(model, Forgotten):
                out.forgotten += (model.task_id,)
            elif model is not None:
                status = model
                out.status = (revision, model)
        if self._on_written is not None:
            self._on_written(snap, revision, records, status)

    def _kill(self, kill: Kill, snap: Snapshot,
              revisions: Mapping[str, tuple[ExecutionRecord, int]], out: Applied,
              now: datetime, logger: Any) -> None:
        label = KILL_REASON_LABELS.get(kill.reason, "killed")
        if kill.agent_id is None and self.backend.cancel(kill.task_id):
            # Never sent to Mesos: no update will ever come, so the record ends here.
            if self._on_launch_dropped is not None:
                self._on_launch_dropped([kill.task_id])
            rec, rev = revisions.get(kill.task_id) or snap.executions[kill.task_id]
            killed = rec.model_copy(update={
                "state": "TASK_KILLED", "message": "killed before it was launched",
                "finished_at": now,
            })
            key = self.store.keys.execution(snap.plural, snap.namespace, snap.name,
                                            kill.task_id)
            revision = self._guarded_commit([Put(key, encode_model(killed))],
                                            [Expect(key, rev)])
            out.records.append((revision, killed))
            if self._on_written is not None:
                self._on_written(snap, revision, [killed], None)
            metrics.TASKS_KILLED.labels(label).inc()
            out.cancelled += (kill.task_id,)
            logger.info("pending launch cancelled", task_id=kill.task_id, reason=kill.reason)
            return
        self.backend.kill(kill.task_id, kill.agent_id, kill.grace_seconds)
        before = snap.executions.get(kill.task_id)
        if before is None or before[0].kill_reason is None:
            # The planner repeats a kill on later passes until the task ends; count the
            # first, when the reason is recorded.
            metrics.TASKS_KILLED.labels(label).inc()
        out.killed += (kill.task_id,)
        logger.info("task kill requested", task_id=kill.task_id, reason=kill.reason)

