"""The task-event pump: the one consumer of what the Mesos backend reports, for every kind
(docs/architecture.md §1, §5, §6).

A status update is written into its execution record, THEN acknowledged (so Mesos resends it
if we die before it is recorded), THEN the owner's key is enqueued in its kind's controller.
Updates are recorded in batches, one compare-and-swap transaction for many, in arrival order.

Tasks are matched to objects by their id alone (`controller.reconcile.taskid`), whose first
field is the kind: the update goes to that kind's controller. An update for a task in Docket's
id format that has no execution record is an orphan — its object or incarnation is gone, e.g.
found by implicit reconciliation after a restart — and is killed, whatever its kind. Updates
for ids in other formats belong to someone else: acknowledged and ignored.

The pump also knows which launches the executor has handed to the backend and that have not
reached Mesos yet: they are left out of reconciliation (Mesos would answer that it does not
know them, and they would be written off while their launch goes out).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import structlog

from controller import metrics
from controller.api import ExecutionRecord, encode_model, kind_by_name
from controller.executor import MAX_TXN_OPS, StalePlan, fenced_commit
from controller.kindcontroller import KindController
from controller.logs import object_logger
from controller.mesos.backend import (
    Disconnected,
    MesosBackend,
    MesosEvent,
    Subscribed,
    TaskLaunched,
    TaskUpdate,
)
from controller.reconcile import parse_task_id
from controller.runtime import Fence, ObjectKey
from controller.store import Delete, EtcdUnavailable, Expect, Put, Store, StoreError
from controller.updates import end_reason, is_failure, is_final, record_update

log = structlog.get_logger("docket.pump")

UPDATE_BATCH = 500
GAUGE_SECONDS = 2.0
_STARTING = frozenset({"LAUNCHING", "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"})


class TaskEventPump:
    def __init__(self, store: Store, controllers: Mapping[str, KindController], *,
                 clock: Callable[[], datetime],
                 fence: Callable[[], Fence | None] | None = None) -> None:
        self.store = store
        self.controllers = controllers
        self.now = clock
        self._fence = fence
        self.backend: MesosBackend | None = None
        self.framework_id: str | None = None
        self.subscribed = False
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, backend: MesosBackend) -> None:
        self.backend = backend
        self._thread = threading.Thread(target=self._run, name="mesos-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        # A standby (or a deposed leader) reports no tasks: the leader's gauges count them.
        for state in metrics.TASK_STATES:
            metrics.TASKS_ACTIVE.labels(state).set(0)

    # --- launches in flight (told by the executor) -------------------------------------------
    def handed_over(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.update(task_ids)

    def dropped(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.difference_update(task_ids)

    def known_tasks(self) -> list[tuple[str, str | None]]:
        """Every task our records say may exist (LAUNCHING intents included), of every kind,
        except launches this process still holds: what the backend reconciles explicitly on
        each subscription."""
        records: list[ExecutionRecord] = []
        try:
            items, _ = self.store.list_raw(self.store.keys.executions_root())
            for _key, value, *_ in items:
                try:
                    records.append(ExecutionRecord.model_validate_json(value))
                except ValueError:
                    continue
        except EtcdUnavailable:
            raise
        except StoreError as exc:
            log.warning("cannot list every record at once; reading them per object",
                        error=str(exc))
            for controller in self.controllers.values():
                owners = {(o.namespace, o.name) for o in controller.informer.list()}
                owners.update(controller.records.owners())
                for namespace, name in owners:
                    known = controller.records.get(namespace, name)
                    records.extend(rec for rec, _ in known.executions.values())
        with self._lock:
            pending = set(self._pending)
        return [(rec.task_id, rec.agent_id) for rec in records
                if not is_final(rec.state) and rec.task_id not in pending]

    # --- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        assert self.backend is not None
        next_gauges = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_gauges:
                self._update_gauges()
                next_gauges = time.monotonic() + GAUGE_SECONDS
            try:
                event = self.backend.events.get(timeout=0.2)
            except queue.Empty:
                continue
            # Take what else is waiting: updates are recorded in batches (one etcd transaction
            # for many), in arrival order, and other events are handled between batches.
            updates: list[TaskUpdate] = []
            while True:
                if isinstance(event, TaskUpdate):
                    updates.append(event)
                else:
                    self._flush(updates)
                    updates = []
                    self._guarded(self._on_event, event)
                if len(updates) >= UPDATE_BATCH:
                    break
                try:
                    event = self.backend.events.get_nowait()
                except queue.Empty:
                    break
            self._flush(updates)

    def _update_gauges(self) -> None:
        counts = dict.fromkeys(metrics.TASK_STATES, 0)
        for controller in self.controllers.values():
            for rec in controller.records.all_executions():
                state = rec.state.removeprefix("TASK_").lower()
                if state in counts:
                    counts[state] += 1
                elif rec.state == "LAUNCHING":
                    counts["staging"] += 1
        for state, count in counts.items():
            metrics.TASKS_ACTIVE.labels(state).set(count)

    @staticmethod
    def _guarded(fn: Callable[[Any], None], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:
            # An update not acknowledged is sent again by Mesos.
            log.exception("handling a mesos event failed", event=repr(arg)[:300])

    def _on_event(self, event: MesosEvent) -> None:
        if isinstance(event, TaskUpdate):
            self._flush([event])
        elif isinstance(event, TaskLaunched):
            with self._lock:
                self._pending.discard(event.task_id)
        elif isinstance(event, Subscribed):
            self.framework_id = event.framework_id
            self.subscribed = True
        elif isinstance(event, Disconnected):
            log.warning("mesos disconnected", reason=event.reason)

    def _flush(self, updates: list[TaskUpdate]) -> None:
        """Record a batch of updates: one compare-and-swap transaction for all the records
        they change, then acknowledge them, then wake their owners. A conflict (a worker wrote
        one of the records meanwhile) sends the batch through one by one, read afresh."""
        if not updates:
            return
        try:
            self._record(updates)
        except StalePlan:
            for update in updates:
                self._guarded(lambda u: self._record([u], fresh=True), update)
        except Exception:
            log.exception("recording a batch of mesos updates failed", count=len(updates))

    def _record(self, updates: list[TaskUpdate], fresh: bool = False) -> None:
        assert self.backend is not None
        keys = self.store.keys
        now = self.now()
        changed: dict[str, tuple[ExecutionRecord, int, KindController, ObjectKey]] = {}
        extra: dict[str, list[Put | Delete]] = {}
        before: dict[str, ExecutionRecord] = {}
        done: list[tuple[TaskUpdate, KindController | None, ObjectKey | None]] = []
        for update in updates:
            parts = parse_task_id(update.task_id)
            if parts is None:
                log.info("ignoring update of a task that is not Docket's",
                         task_id=update.task_id, state=update.state)
                done.append((update, None, None))
                continue
            with self._lock:
                self._pending.discard(update.task_id)
            owner = ObjectKey(parts.owner.kind, parts.owner.namespace, parts.owner.name)
            logger = object_logger(owner.kind, owner.namespace, owner.name,
                                   task_id=update.task_id)
            controller = self.controllers.get(owner.kind)
            if controller is None:
                # A kind this process runs no controller for launched nothing: its tasks are
                # orphans (its records, if any, stay for the controller that owns them).
                found_raw = self._record_of_unrun_kind(owner, update.task_id)
                if found_raw:
                    done.append((update, None, None))
                else:
                    self._orphan(update, logger)
                continue
            records = controller.records
            key = keys.execution(controller.kind.plural, owner.namespace, owner.name,
                                 update.task_id)
            if key in changed:
                record, revision, _, _ = changed[key]
            else:
                if fresh:
                    records.invalidate(owner.namespace, owner.name)
                found = records.execution(owner.namespace, owner.name, update.task_id)
                if found is None:
                    # Killing is drastic: make sure with etcd itself, not just the cache.
                    records.invalidate(owner.namespace, owner.name)
                    found = records.execution(owner.namespace, owner.name, update.task_id)
                if found is None:
                    self._orphan(update, logger)
                    continue
                record, revision = found
            new = record_update(record, update, self.framework_id, now)
            if new is not record:
                changed[key] = (new, revision, controller, owner)
                before.setdefault(key, record)
                hook = controller.kind.record_ops
                if hook is not None:
                    # E.g. a Queue batch's ack: its messages leave the source in the
                    # transaction that records its success, before Mesos hears of it.
                    more = hook(keys, owner.namespace, owner.name, record, new)
                    if more:
                        extra[key] = more
            # A task going on as planned changes no plan (its timeout wake-up is already
            # queued, and the periodic resync covers the rest): only wake the owner for
            # endings, kills under way and anything unusual.
            routine = (record.state in _STARTING and new.state in _STARTING
                       and new.kill_reason is None and new.healthy == record.healthy
                       and not (controller.kind.wake_on_running and new.state != record.state
                                and new.state == "TASK_RUNNING"))
            done.append((update, None if routine else controller, owner))
        if changed:
            self._commit(list(changed.items()), extra)
            for key, (new, _, controller, _) in changed.items():
                if controller.kind.record_changed is not None:
                    controller.kind.record_changed(before[key], new)
        woken: set[tuple[KindController, ObjectKey]] = set()
        for update, to_wake, whom in done:
            self.backend.acknowledge(update)
            if to_wake is not None and whom is not None:
                if update.terminal:
                    self.backend.cancel(update.task_id)  # an answer GONE to a launch held
                woken.add((to_wake, whom))
        for to_wake, whom in woken:
            to_wake.wake(whom.namespace, whom.name)

    def _commit(self, items: list[tuple[str, tuple[ExecutionRecord, int, KindController,
                                                    ObjectKey]]],
                extra: Mapping[str, list[Put | Delete]]) -> None:
        for chunk in _chunks(items, extra):
            try:
                revision = fenced_commit(
                    self.store, self._fence,
                    [op for k, (rec, _, _, _) in chunk
                     for op in (Put(k, encode_model(rec)), *extra.get(k, ()))],
                    [Expect(k, rev) for k, (_, rev, _, _) in chunk])
            except Exception:
                for _, (_, _, controller, owner) in chunk:
                    controller.records.invalidate(owner.namespace, owner.name)
                raise
            for _, (rec, _, controller, owner) in chunk:
                controller.records.wrote(owner.namespace, owner.name, revision, [rec])
                self._count(rec, owner)

    def _record_of_unrun_kind(self, owner: ObjectKey, task_id: str) -> bool:
        plural = kind_by_name(owner.kind).plural
        key = self.store.keys.execution(plural, owner.namespace, owner.name, task_id)
        return self.store.get_raw(key) is not None

    @staticmethod
    def _count(rec: ExecutionRecord, owner: ObjectKey) -> None:
        log.debug("task update recorded", kind=owner.kind, namespace=owner.namespace,
                  name=owner.name, task_id=rec.task_id, state=rec.state, reason=rec.reason)
        if is_final(rec.state):
            metrics.TASKS_FINISHED.labels(end_reason(rec)).inc()
            if is_failure(rec):
                metrics.TASKS_FAILED.labels(end_reason(rec)).inc()

    def _orphan(self, update: TaskUpdate, logger: Any) -> None:
        assert self.backend is not None
        if not update.terminal:
            logger.warning("killing orphan task: its object or incarnation is gone",
                           state=update.state)
            self.backend.kill(update.task_id, update.agent_id)
        self.backend.acknowledge(update)


def _chunks(items: list[Any], extra: Mapping[str, list[Put | Delete]]) -> list[list[Any]]:
    """`items` cut into transactions of at most MAX_TXN_OPS operations, the extra operations
    of a record counted with it (one record and its extras are never split)."""
    chunks: list[list[Any]] = []
    size = 0
    for item in items:
        ops = 1 + len(extra.get(item[0], ()))
        if not chunks or size + ops > MAX_TXN_OPS:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += ops
    return chunks
